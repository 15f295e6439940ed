"""How well the server's idle rule (``spacelive.motion.idle``) tells speech from a room's silence.

    python benchmarks/idle_mouth.py [--utterances 120]

A portrait with parted lips shows its own mouth only while idle, judged from MFCC c0 against a
noise floor learnt per stream. Two checks, on training voices only:

- **Augmented speech** (the corpus recipe: equalization, reverberation, noise at 5-40 dB SNR,
  loudness, silence gaps and long pauses): the share of speaking frames (by the phones) that
  are shown with any of the portrait's own parting (should be ~0), and the share of the
  phone-timed idle frames shown closed instead (harmless, but the portrait loses its smile).
  Cold: the stream starts with the utterance; warm: its second pass, as in a long call.
- **Rooms**: 40 s of noise (white, pink-ish, a 200-1000 Hz hum) at -70 to -40 dBFS and nothing
  else, from the first sample or after 0.1 s of digital silence: how long the lips are shown
  closed (relaxation < 1) in the first 8 s, while the floor learns the room, and how often
  after that (false alarms).

Writes benchmarks/results/idle_mouth.json.
"""

import argparse
import json
import sys

import numpy as np
from scipy import signal

from spacelive import MODEL_SAMPLE_RATE, idle
from spacelive.checks.bench import write_result
from spacelive.media.audio import frame_count, offline_mfcc
from spacelive.motion.idle import audio_relaxation, relaxation_track
from spacelive.stream.engine import DEFAULT_MODELS
from spacelive.training.corpus import SentenceMaker, training_voices, utterance
from spacelive.training.teacher import speaking_frames

LOOKAHEAD = json.loads((DEFAULT_MODELS / "manifest.json").read_text())["stages"]["audio_encoder"][
    "lookahead"
]  # the bundled audio encoder's
ROOMS_DBFS = (-70, -60, -50, -40)
ROOM_SECONDS = 40.0


def corpus_agreement(utterances: int, seed: int) -> dict:
    """Per utterance, cold (the stream starts with it) and warm (its second pass, after the
    floor has heard the same room once: a long call)."""
    voices = training_voices()
    sentences = SentenceMaker()
    counts = {k: np.zeros(4, np.int64) for k in ("cold", "warm")}
    for index in range(utterances):
        rng = np.random.default_rng([seed, index])
        u = utterance(voices[index % len(voices)], sentences, rng)
        frames = frame_count(len(u["audio"]), MODEL_SAMPLE_RATE)
        speaking = speaking_frames(u["phones"], frames)
        c0 = offline_mfcc(u["audio"])[:frames, 0]
        for name, passes in (("cold", 1), ("warm", 2)):
            truth = relaxation_track(np.tile(speaking, passes))[-frames:]
            shown = audio_relaxation(np.tile(c0, passes), LOOKAHEAD)[-frames:]
            counts[name] += [
                speaking.sum(),
                (shown[speaking] > 0).sum(),
                (truth == 1).sum(),
                (shown[truth == 1] < 1).sum(),
            ]
    return {
        name: {
            "speech_shown_idle": float(n[1] / max(n[0], 1)),
            "idle_shown_closed": float(n[3] / max(n[2], 1)),
            "speaking_frames": int(n[0]),
            "idle_frames": int(n[2]),
        }
        for name, n in counts.items()
    } | {"utterances": utterances}


def room_noise(kind: str, dbfs: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """(n,) float32: white, pink-ish (as the corpus's) or 200-1000 Hz (a hum) noise at dbfs RMS."""
    noise = rng.standard_normal(int(seconds * MODEL_SAMPLE_RATE))
    if kind == "pink":
        noise = signal.lfilter([1.0], [1.0, -0.95], noise)
    elif kind == "hum":
        noise = signal.sosfilt(
            signal.butter(4, [200, 1000], "bandpass", fs=MODEL_SAMPLE_RATE, output="sos"), noise
        )
    return (noise / noise.std() * 10 ** (dbfs / 20)).astype(np.float32)


def rooms(seed: int) -> dict:
    """Per noise and level: seconds shown closed in the first 8 s, and the share of frames
    shown closed from 8 s to 40 s (false alarms once learnt); and after 0.1 s of digital
    silence (a client's pre-roll)."""
    out = {}
    for kind in ("white", "pink", "hum"):
        for dbfs in ROOMS_DBFS:
            for preroll in (0.0, 0.1):
                rng = np.random.default_rng([seed, -dbfs, len(kind), int(10 * preroll)])
                noise = room_noise(kind, dbfs, ROOM_SECONDS, rng)
                audio = np.concatenate([np.zeros(int(preroll * MODEL_SAMPLE_RATE)), noise])
                shown = audio_relaxation(offline_mfcc(audio)[:, 0], LOOKAHEAD)
                name = f"{kind} {dbfs} dBFS" + (f" after {preroll} s of silence" if preroll else "")
                out[name] = {
                    "closed_s": float((shown[:240] < 1).sum() / 30),
                    "closed_share_8_40_s": float((shown[240:] < 1).mean()),
                }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=120)
    parser.add_argument("--seed", type=int, default=29)  # the rule was tuned on seed 11
    parser.add_argument("--name", default="idle_mouth")
    args = parser.parse_args()
    report = {
        "benchmark": "idle_mouth",
        "lookahead": LOOKAHEAD,
        "rule": {
            name: getattr(idle, name)
            for name in (
                "SPEECH_ABOVE_FLOOR",
                "FLOOR_FRAMES",
                "FLOOR_WARMUP_FRAMES",
                "FLOOR_LOWEST",
                "IDLE_AFTER_FRAMES",
            )
        },
        "corpus": corpus_agreement(args.utterances, args.seed),
        "rooms": rooms(args.seed),
    }
    write_result(args.name, report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
