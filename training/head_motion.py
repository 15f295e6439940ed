"""The head-motion teacher: phoneme timing + audio -> per-frame head pose (T, 6), PoseGen's targets.

Talkers move their heads with their prosody. The teacher composes, per utterance:

* **activity**: speech (any non-silent phone) versus silence, smoothed so that the head calms
  down over ~0.5 s after speech ends and wakes within ~0.15 s when it starts;
* **slow drift**: smooth random wandering of yaw, pitch and roll (and a little sway of the
  head's position), larger while speaking than in silence;
* **nods and tilts on stressed syllables**: every stressed vowel (long for its utterance, and
  loud) starts a short pitch bump (a nod) shortly before its onset, the louder the larger, so
  that where a head nods can be heard; some carry a roll tilt (to the speaker's side) or a yaw
  glance;
* **a random style** per utterance (amplitudes, how often the speaker nods, drift speed, a
  resting offset), so that one audio admits many motions: PoseGen's latent learns the style.

Pose is (yaw, pitch, roll) in radians and (x, y, z) translation in crop units, as an offset
from the portrait's own pose (``spacelive.face.head_model.rotation_from_angles`` conventions:
positive pitch tilts the chin down). Every sequence starts at zero, as a stream does. Frame k
samples time k / 30 s, like the server's frame clock.
"""

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from spacelive import FRAME_RATE, MODEL_SAMPLE_RATE
from spacelive.face.landmarks import POSE_DIMS
from spacelive.training.alignment import Phone

VOWELS = frozenset(
    ["AA", "AE", "AH", "AO", "AW", "AX", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"]
)  # ARPAbet vowels (the alignment's phoneme set)
SILENCES = frozenset({"SIL"})
NOD_S = 0.36
"""Length of one nod (down and back)."""
NOD_LEAD_S = 0.06
"""A nod starts this long before its vowel: heads lead the voice a little."""
START_S = 0.5
"""Every sequence fades in from the zero pose over this long (a stream starts at the portrait)."""


@dataclass(frozen=True, slots=True)
class HeadStyle:
    """One utterance's way of moving: amplitudes in degrees (translation in crop units)."""

    drift_deg: tuple[float, float, float]  # yaw, pitch, roll wander (std) while speaking
    drift_s: float  # time scale of the wander
    calm: float  # share of the wander left in silence
    nod_deg: float  # pitch of a full nod
    tilt_share: float  # share of nods that also tilt (roll) or glance (yaw)
    tilt_side: float  # +1 or -1: which way this speaker tilts
    offset_deg: tuple[float, float, float]  # where the head rests while talking
    sway: float  # translation wander (std), crop units

    @staticmethod
    def draw(rng: np.random.Generator) -> "HeadStyle":
        return HeadStyle(
            drift_deg=(rng.uniform(2.0, 6.0), rng.uniform(2.0, 5.0), rng.uniform(0.5, 2.5)),
            drift_s=rng.uniform(0.8, 2.0),
            calm=rng.uniform(0.15, 0.45),
            nod_deg=rng.uniform(2.0, 7.0),
            tilt_share=rng.uniform(0.1, 0.5),
            tilt_side=float(rng.choice((-1.0, 1.0))),
            offset_deg=(rng.normal(0, 2.0), rng.normal(0, 1.5), rng.normal(0, 1.0)),
            sway=rng.uniform(0.002, 0.008),
        )


def activity(phones: list[Phone], frames: int) -> np.ndarray:
    """(T,) in [0, 1]: 1 while speaking, decaying over ~0.5 s of silence, rising in ~0.15 s."""
    t = np.arange(frames) / FRAME_RATE
    speaking = np.zeros(frames, bool)
    for p in phones:
        if p.phoneme not in SILENCES:
            speaking |= (t >= p.start_s) & (t < p.end_s)
    out = np.zeros(frames)
    level = 0.0
    rise, fall = 1 - np.exp(-1 / (0.15 * FRAME_RATE)), 1 - np.exp(-1 / (0.5 * FRAME_RATE))
    for k in range(frames):
        level += (rise if speaking[k] else fall) * (float(speaking[k]) - level)
        out[k] = level
    return out


def stressed_vowels(phones: list[Phone], audio: np.ndarray) -> list[tuple[float, float]]:
    """(onset_s, strength in (0, 1]) of the vowels that carry stress: long for their utterance
    and loud (RMS of the 16 kHz audio over the vowel, against the utterance's loudest)."""
    vowels = [p for p in phones if p.phoneme in VOWELS and p.end_s > p.start_s]
    if not vowels:
        return []
    durations = np.array([p.end_s - p.start_s for p in vowels])
    loudness = np.array(
        [
            np.sqrt(
                np.mean(
                    audio[int(p.start_s * MODEL_SAMPLE_RATE) : int(p.end_s * MODEL_SAMPLE_RATE)]
                    ** 2
                )
                + 1e-12
            )
            for p in vowels
        ]
    )
    score = (durations / np.median(durations)) * (loudness / loudness.max())
    threshold = np.quantile(score, 0.6)
    top = score.max()
    return [
        (p.start_s, float(s / top)) for p, s in zip(vowels, score, strict=True) if s >= threshold
    ]


def _wander(rng: np.random.Generator, frames: int, time_s: float) -> np.ndarray:
    """(T,) smooth noise of unit standard deviation with the given time scale."""
    noise = gaussian_filter1d(rng.standard_normal(frames + 200), time_s * FRAME_RATE)[100:-100]
    return noise / max(float(np.std(noise)), 1e-9)


def _bump(t: np.ndarray, start: float, length: float) -> np.ndarray:
    """Raised cosine: 0 outside [start, start + length], 1 at its middle."""
    phase = np.clip((t - start) / length, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(2 * np.pi * phase)


def head_motion(
    phones: list[Phone], audio: np.ndarray, frames: int, rng: np.random.Generator
) -> np.ndarray:
    """Teacher head pose (T, 6) float32: yaw, pitch, roll (rad), x, y, z (crop units), as an
    offset from the portrait's pose, starting at zero. ``audio``: 16 kHz float samples."""
    style = HeadStyle.draw(rng)
    t = np.arange(frames) / FRAME_RATE
    active = activity(phones, frames)
    presence = style.calm + (1 - style.calm) * active
    degrees = np.zeros((frames, 3))
    for axis in range(3):
        degrees[:, axis] = style.drift_deg[axis] * _wander(rng, frames, style.drift_s)
        degrees[:, axis] = presence * degrees[:, axis] + active * style.offset_deg[axis]
    for onset, strength in stressed_vowels(phones, audio):
        shape = _bump(t, onset - NOD_LEAD_S, NOD_S)
        degrees[:, 1] += style.nod_deg * (0.4 + 0.6 * strength) * shape
        if rng.random() < style.tilt_share:
            axis = 2 if rng.random() < 0.6 else 0
            degrees[:, axis] += style.tilt_side * style.nod_deg * 0.6 * strength * shape
    pose = np.zeros((frames, POSE_DIMS))
    pose[:, :3] = np.radians(degrees)
    for axis in (3, 4):
        pose[:, axis] = style.sway * presence * _wander(rng, frames, 2 * style.drift_s)
    fade_in = np.clip(t / START_S, 0.0, 1.0)
    fade_in = fade_in * fade_in * (3 - 2 * fade_in)
    return (pose * fade_in[:, None]).astype(np.float32)
