"""The synthetic speech corpus: `spacelive data synth --hours H --out DIR [--seed N]`.

Speech with exact phoneme timing from the training voices only: espeak-ng drives the mbrola
voices through .pho files (every voice installed except ``us3``), and flite speaks with
``kal16``, ``awb`` and ``rms`` (never ``slt``) and reports its own phone timing, and
espeak-ng's own synthesizer (English, German, French, Spanish, with random female and male
variants) reports phone timing through its library's events (`espeak.py`). Sentences are
drawn from Debian word lists in the voice's language. Tempo and pitch vary per utterance
(applied to the synthesis input, so timing stays exact), utterances join 1-3 sentences with
silence gaps of varied length (and in some a pause of seconds), a speed change shifts
formants and pitch together (with the alignment rescaled), and the audio is augmented as in
the paper: equalization, loudness, noise and reverberation.

Each shard (``shard-NNNN.npz``) holds, per utterance, the 16 kHz audio as int16, the MFCC
frames on the 30 fps clock, the articulation tracks of the teacher, and the alignment.
Identity and emotion are not baked in: training draws them per example. Generation is
reproducible from the seed.
"""

import io
import logging
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal

from spacelive import MODEL_SAMPLE_RATE
from spacelive.media.audio import offline_mfcc
from spacelive.training import espeak
from spacelive.training.alignment import (
    AlignmentError,
    Phone,
    merge_silences,
    parse_flite,
    parse_pho,
)
from spacelive.training.teacher import articulation

log = logging.getLogger(__name__)

MBROLA_DIR = Path("/usr/share/mbrola")
VOCAL_TRACT_SHARE = 0.6
LONG_PAUSE_SHARE, LONG_PAUSE_S = 0.3, (2.0, 6.0)
"""Share of utterances with one long pause, and its length range in seconds."""
ESPEAK_VOICES = {"en-us": "en", "en": "en", "de": "de", "fr": "fr", "es": "es"}


@dataclass(frozen=True, slots=True)
class Voice:
    engine: str  # "mbrola", "flite" or "espeak" (espeak-ng's own synthesizer)
    name: str
    language: str  # word list language

    @property
    def key(self) -> str:
        return f"{self.engine}:{self.name}"


HELD_OUT = (Voice("mbrola", "us3", "en"), Voice("flite", "slt", "en"))
"""Never used for training: they are kept for evaluation on unseen voices."""
HELD_OUT_VOICES = frozenset(voice.key for voice in HELD_OUT)


def parse_voices(text: str) -> tuple[Voice, ...]:
    """``engine:name,engine:name,...`` -> English voices (for the benchmarks' ``--voices``)."""
    keys = [key.split(":", 1) for key in text.split(",")]
    if any(len(k) != 2 or not all(k) for k in keys):
        raise ValueError(f"{text!r}: expected engine:name,engine:name,...")
    return tuple(Voice(engine, name, "en") for engine, name in keys)


_MBROLA_LANGUAGES = {
    "us1": "en", "us2": "en", "us3": "en", "en1": "en",
    **{f"de{i}": "de" for i in range(1, 9)},
    **{f"fr{i}": "fr" for i in range(1, 8)},
    **{f"es{i}": "es" for i in range(1, 5)},
    "mx1": "es", "mx2": "es", "vz1": "es",
    # espeak-ng's English through German and French databases: English with more timbres.
    **{f"de{i}-en": "en" for i in range(1, 7)}, "fr1-en": "en", "fr4-en": "en",
}  # fmt: skip
"""Every mbrola voice (espeak-ng's mb-NAME, database NAME up to the first '-', from Debian's
mbrola-DATABASE) in a language the sentence maker writes; those installed are used."""
WORD_LISTS = {
    "en": Path("/usr/share/dict/american-english"),
    "de": Path("/usr/share/dict/ngerman"),
    "fr": Path("/usr/share/dict/french"),
    "es": Path("/usr/share/dict/spanish"),
}
_FUNCTION_WORDS = {
    "en": "the a and of to in is it that we you he she they was for on with as at by not but",
    "de": "der die das und ist nicht ein eine zu mit von auf ich du wir sie es den dem",
    "fr": "le la les et est un une de du des pas que qui dans pour avec sur je tu il nous",
    "es": "el la los las y es un una de del que en por con para no se lo su al",
}


def _mbrola_database(voice_name: str) -> Path:
    database = voice_name.split("-")[0]
    return MBROLA_DIR / database / database


def training_voices() -> list[Voice]:
    """Every installed training voice (mbrola voices but us3; flite kal16, awb, rms; espeak-ng's
    own voices for five languages, each with random variants)."""
    voices = [
        Voice("mbrola", name, language)
        for name, language in _MBROLA_LANGUAGES.items()
        if _mbrola_database(name).exists() and f"mbrola:{name}" not in HELD_OUT_VOICES
    ]
    voices += [Voice("flite", name, "en") for name in ("kal16", "awb", "rms")]
    voices += [Voice("espeak", name, language) for name, language in ESPEAK_VOICES.items()]
    return [v for v in voices if v.key not in HELD_OUT_VOICES]


def _words(language: str) -> list[str]:
    text = WORD_LISTS[language].read_text(encoding="utf-8", errors="ignore")
    # Plain lower-case words: no possessives, abbreviations or proper names.
    return [w for w in text.split() if re.fullmatch(r"[^\W\d_]{2,14}", w) and w.islower()]


class SentenceMaker:
    """Random sentences mixing content words from the word list with function words."""

    def __init__(self) -> None:
        self._words: dict[str, list[str]] = {}

    def sentence(self, language: str, rng: np.random.Generator) -> str:
        if language not in self._words:
            self._words[language] = _words(language)
        content, function = self._words[language], _FUNCTION_WORDS[language].split()
        words = [
            function[rng.integers(len(function))]
            if rng.random() < 0.35
            else content[rng.integers(len(content))]
            for _ in range(rng.integers(4, 13))
        ]
        return " ".join(words)


def _wav_samples(data: bytes) -> tuple[np.ndarray, int]:
    """PCM16 WAV bytes (also with a streamed header that claims no frames) -> float samples."""
    if data[:4] != b"RIFF":
        raise RuntimeError("synthesizer produced no WAV")
    rate = int.from_bytes(data[24:28], "little")
    start = data.find(b"data") + 8
    return np.frombuffer(data[start : len(data) - (len(data) - start) % 2], "<i2") / 32768.0, rate


def _scale_pho(pho: str, tempo: float, pitch: float, lead_s: float, tail_s: float) -> str:
    """Stretch durations by 1/tempo and pitch targets by ``pitch``; add silence around."""
    lines = [f"_ {int(lead_s * 1000)}"]
    for line in pho.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        duration = max(1, round(float(fields[1]) / tempo))
        points = fields[2:]
        points = [p if i % 2 == 0 else str(round(float(p) * pitch)) for i, p in enumerate(points)]
        lines.append(" ".join([fields[0], str(duration), *points]))
    lines.append(f"_ {int(tail_s * 1000)}")
    return "\n".join(lines) + "\n"


def synthesize(voice: Voice, text: str, rng: np.random.Generator) -> tuple[np.ndarray, list[Phone]]:
    """One sentence: (16 kHz float samples, exact alignment)."""
    tempo, pitch = rng.uniform(0.8, 1.25), rng.uniform(0.8, 1.25)
    lead, tail = rng.uniform(0.05, 0.5), rng.uniform(0.05, 0.5)
    if voice.engine == "mbrola":
        pho = subprocess.run(
            ["espeak-ng", "-v", f"mb-{voice.name}", "-q", "--pho", text],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        pho = _scale_pho(pho, tempo, pitch, lead, tail)
        database = _mbrola_database(voice.name)
        wav = subprocess.run(
            ["mbrola", "-e", str(database), "-", "-.wav"],
            input=pho.encode(),
            capture_output=True,
            check=True,
        ).stdout
        samples, rate = _wav_samples(wav)
        phones = parse_pho(pho)
    elif voice.engine == "flite":
        with tempfile.NamedTemporaryFile(suffix=".wav") as out:
            timing = subprocess.run(
                [
                    "flite",
                    "-voice",
                    voice.name,
                    "-psdur",
                    "--setf",
                    f"duration_stretch={1 / tempo}",
                    "--setf",
                    f"int_f0_target_mean={round(110 * pitch)}",
                    "-t",
                    text,
                    "-o",
                    out.name,
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            samples, rate = _wav_samples(Path(out.name).read_bytes())
        samples, phones = _pad_with_silence(samples, rate, parse_flite(timing), lead, tail)
    else:  # espeak-ng's own synthesizer, with a random voice variant of either sex
        variant = rng.choice(espeak.FEMALE_VARIANTS + espeak.MALE_VARIANTS)
        samples, rate, phones = espeak.speak(
            f"{voice.name}+{variant}",
            text,
            rate_wpm=round(espeak.DEFAULT_RATE_WPM * tempo),
            pitch=int(np.clip(50 * pitch + rng.normal(0, 10), 0, 100)),
        )
        samples, phones = _pad_with_silence(samples, rate, phones, lead, tail)
    if rate != MODEL_SAMPLE_RATE:
        samples = signal.resample_poly(samples, MODEL_SAMPLE_RATE, rate)
    return samples.astype(np.float32), phones


def _pad_with_silence(
    samples: np.ndarray, rate: int, phones: list[Phone], lead_s: float, tail_s: float
) -> tuple[np.ndarray, list[Phone]]:
    """Silence before and after a sentence, with the alignment shifted to match."""
    samples = np.concatenate([np.zeros(int(lead_s * rate)), samples, np.zeros(int(tail_s * rate))])
    lead = int(lead_s * rate) / rate
    phones = merge_silences(
        [Phone("SIL", 0.0, lead)]
        + [Phone(p.phoneme, p.start_s + lead, p.end_s + lead) for p in phones]
        + [Phone("SIL", phones[-1].end_s + lead, len(samples) / rate)]
    )
    return samples, phones


def change_vocal_tract(
    samples: np.ndarray, phones: list[Phone], rng: np.random.Generator
) -> tuple[np.ndarray, list[Phone]]:
    """Play the speech a little faster or slower (factor 0.87-1.15): formants and pitch
    shift together, as between a longer and a shorter vocal tract, and the alignment is
    rescaled with it, so timing stays exact. The synthetic voices are few; this spreads them."""
    speed = rng.uniform(0.87, 1.15)
    up, down = 200, round(200 * speed)
    samples = signal.resample_poly(samples, up, down)
    scale = up / down
    return samples, [Phone(p.phoneme, p.start_s * scale, p.end_s * scale) for p in phones]


def augment(samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Equalization, reverberation, noise and loudness, each with some probability."""
    x = samples.astype(np.float64)
    sr = MODEL_SAMPLE_RATE
    if rng.random() < 0.7:  # equalization: a few random peaking filters
        for _ in range(rng.integers(1, 4)):
            centre, gain_db, q = rng.uniform(150, 6000), rng.uniform(-9, 9), rng.uniform(0.5, 2)
            a = 10 ** (gain_db / 40)
            w0 = 2 * np.pi * centre / sr
            alpha = np.sin(w0) / (2 * q)
            b = [1 + alpha * a, -2 * np.cos(w0), 1 - alpha * a]
            den = [1 + alpha / a, -2 * np.cos(w0), 1 - alpha / a]
            x = signal.lfilter(b, den, x)
    if rng.random() < 0.4:  # reverberation: exponentially decaying noise, RT60 0.1-0.6 s
        rt60 = rng.uniform(0.1, 0.6)
        n = int(rt60 * sr)
        ir = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / n)
        ir[0] = 1.0 / rng.uniform(0.3, 1.0)
        wet = signal.fftconvolve(x, ir / np.abs(ir).sum() * 4)[: len(x)]
        x = wet * np.std(x) / max(np.std(wet), 1e-9)
    if rng.random() < 0.6:  # noise at 5-40 dB SNR, white or pinkish
        noise = rng.standard_normal(len(x))
        if rng.random() < 0.5:
            noise = signal.lfilter([1.0], [1.0, -0.95], noise)
        snr_db = rng.uniform(5, 40)
        power = np.mean(x**2) + 1e-12
        x = x + noise * np.sqrt(power / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    peak = np.abs(x).max() + 1e-9
    x = x / peak * rng.uniform(0.05, 0.95)  # loudness
    return x.astype(np.float32)


def utterance(voice: Voice, sentences: SentenceMaker, rng: np.random.Generator) -> dict:
    """1-3 sentences from one voice with silence gaps (and in LONG_PAUSE_SHARE of them one long
    pause), augmented, with MFCC and tracks."""
    pieces, phones, t = [], [], 0.0
    count = int(rng.integers(1, 4))
    # Now and then a long pause (before any of the sentences, or after the last): a speaker
    # who stops talking for seconds must come back to rest and stay there.
    pause_at = int(rng.integers(0, count + 1)) if rng.random() < LONG_PAUSE_SHARE else -1
    for i in range(count + 1):
        if i == pause_at:
            seconds = rng.uniform(*LONG_PAUSE_S)
            pieces.append(np.zeros(int(seconds * MODEL_SAMPLE_RATE)))
            phones.append(Phone("SIL", t, t + len(pieces[-1]) / MODEL_SAMPLE_RATE))
            t = phones[-1].end_s
        if i == count:
            break
        samples, sentence_phones = synthesize(voice, sentences.sentence(voice.language, rng), rng)
        pieces.append(samples)
        phones += [Phone(p.phoneme, p.start_s + t, p.end_s + t) for p in sentence_phones]
        t += len(samples) / MODEL_SAMPLE_RATE
    phones = merge_silences(phones)
    audio = np.concatenate(pieces)
    if rng.random() < VOCAL_TRACT_SHARE:
        audio, phones = change_vocal_tract(audio, phones, rng)
    audio = augment(audio, rng)
    duration = len(audio) / MODEL_SAMPLE_RATE
    mfcc = offline_mfcc(audio)
    tracks = articulation(phones, duration).values
    return {"voice": voice.key, "audio": audio, "mfcc": mfcc, "tracks": tracks, "phones": phones}


def write_shard(path: Path, utterances: list[dict]) -> None:
    """Utterances concatenated, with offsets: compact and loadable with np.load."""
    frames = np.cumsum([0] + [len(u["mfcc"]) for u in utterances])
    samples = np.cumsum([0] + [len(u["audio"]) for u in utterances])
    phone_counts = np.cumsum([0] + [len(u["phones"]) for u in utterances])
    all_phones = [p for u in utterances for p in u["phones"]]
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        audio=(np.concatenate([u["audio"] for u in utterances]) * 32767).astype(np.int16),
        mfcc=np.concatenate([u["mfcc"] for u in utterances]).astype(np.float16),
        tracks=np.concatenate([u["tracks"] for u in utterances]).astype(np.float16),
        frame_offsets=frames,
        sample_offsets=samples,
        phone_offsets=phone_counts,
        phonemes=np.array([p.phoneme for p in all_phones]),
        phone_starts=np.array([p.start_s for p in all_phones], np.float32),
        phone_ends=np.array([p.end_s for p in all_phones], np.float32),
        voices=np.array([u["voice"] for u in utterances]),
    )
    path.write_bytes(buffer.getvalue())


def synthesize_corpus(out: Path, hours: float, seed: int = 0, shard_minutes: float = 10.0) -> dict:
    """Generate ``hours`` of training speech into shards under ``out``; returns a summary."""
    out.mkdir(parents=True, exist_ok=True)
    voices = training_voices()
    if not voices:
        raise RuntimeError("no training voices installed: install espeak-ng, mbrola voices, flite")
    sentences = SentenceMaker()
    total_s, shard, index = 0.0, [], 0
    shard_s = 0.0
    per_voice: dict[str, float] = {}
    skipped = 0
    while total_s < hours * 3600:
        # Each utterance has its own generator: shards are reproducible from the seed alone.
        rng = np.random.default_rng([seed, index])
        voice = voices[index % len(voices)]
        index += 1
        try:
            u = utterance(voice, sentences, rng)
        except (AlignmentError, subprocess.CalledProcessError) as exc:
            skipped += 1  # a rare symbol or a synthesizer hiccup: one utterance, not the corpus
            log.warning("skipped utterance %d (%s): %s", index - 1, voice.key, exc)
            continue
        seconds = len(u["audio"]) / MODEL_SAMPLE_RATE
        shard.append(u)
        total_s, shard_s = total_s + seconds, shard_s + seconds
        per_voice[voice.key] = per_voice.get(voice.key, 0.0) + seconds
        if shard_s >= shard_minutes * 60:
            write_shard(out / f"shard-{len(list(out.glob('shard-*.npz'))):04d}.npz", shard)
            log.info("corpus: %.2f of %.2f hours", total_s / 3600, hours)
            shard, shard_s = [], 0.0
    if shard:
        write_shard(out / f"shard-{len(list(out.glob('shard-*.npz'))):04d}.npz", shard)
    return {
        "utterances": index - skipped,
        "skipped": skipped,
        "hours": total_s / 3600,
        "seed": seed,
        "hours_per_voice": {k: v / 3600 for k, v in per_voice.items()},
    }
