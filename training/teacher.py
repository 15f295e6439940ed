"""The face-motion teacher: phoneme timing -> per-frame normalized landmarks (T, 110, 3).

Phones map to visemes, each a target for a few articulatory parameters (jaw opening, lip
spread, protrusion, bilabial closure, labiodental contact). Coarticulation follows the
Cohen-Massaro dominance model: every phone exerts a dominance that peaks at its centre and
decays with distance, so lips anticipate the next phone and carry over the last; phones that
must be reached (p, b, m closure, f/v contact) dominate strongly and narrowly. The parameter
tracks then deform the identity's normalized landmarks with its lips closed: silence rests
closed. A portrait whose lips are parted at rest gets them back only while it is idle
(``spacelive.motion.idle``: before the first word, and after a second of silence).

Frame k samples the tracks at time k / 30 s, like the server's frame clock.
"""

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from spacelive import FRAME_RATE
from spacelive.face.landmarks import (
    CHIN_WEIGHTS,
    EMOTIONS,
    IBUG_LOWER_INNER_LIP,
    IBUG_LOWER_OUTER_LIP,
    IBUG_UPPER_INNER_LIP,
    IBUG_UPPER_OUTER_LIP,
    JAW,
    SPARSE_POINTS,
    closed_mouth,
)
from spacelive.motion.idle import mouth_parting, relaxation_track
from spacelive.training.alignment import Phone

PARAMETERS = ("open", "spread", "protrude", "closure", "labiodental")

# Viseme targets: (open, spread, protrude, closure, labiodental, dominance strength).
# fmt: off
VISEMES = {
    "SIL": (0.0, 0.0, 0.0, 0.0, 0.0, 0.6),  # the identity's own rest
    "P": (0.0, 0.0, 0.0, 1.0, 0.0, 4.0), "B": (0.0, 0.0, 0.0, 1.0, 0.0, 4.0),
    "M": (0.0, 0.0, 0.0, 1.0, 0.0, 4.0),
    "F": (0.08, 0.1, 0.0, 0.0, 1.0, 3.0), "V": (0.08, 0.1, 0.0, 0.0, 1.0, 3.0),
    "TH": (0.2, 0.1, 0.0, 0.0, 0.0, 1.0), "DH": (0.18, 0.1, 0.0, 0.0, 0.0, 1.0),
    "T": (0.15, 0.2, 0.0, 0.0, 0.0, 0.8), "D": (0.15, 0.2, 0.0, 0.0, 0.0, 0.8),
    "DX": (0.2, 0.1, 0.0, 0.0, 0.0, 0.5), "N": (0.12, 0.15, 0.0, 0.0, 0.0, 0.8),
    "L": (0.22, 0.1, 0.0, 0.0, 0.0, 0.7), "S": (0.1, 0.35, 0.0, 0.0, 0.0, 1.2),
    "Z": (0.1, 0.35, 0.0, 0.0, 0.0, 1.2), "SH": (0.15, -0.3, 0.7, 0.0, 0.0, 1.5),
    "ZH": (0.15, -0.3, 0.7, 0.0, 0.0, 1.5), "CH": (0.15, -0.3, 0.7, 0.0, 0.0, 1.5),
    "JH": (0.15, -0.3, 0.7, 0.0, 0.0, 1.5), "K": (0.25, 0.1, 0.0, 0.0, 0.0, 0.5),
    "G": (0.25, 0.1, 0.0, 0.0, 0.0, 0.5), "NG": (0.2, 0.1, 0.0, 0.0, 0.0, 0.5),
    "HH": (0.3, 0.0, 0.0, 0.0, 0.0, 0.2), "Y": (0.15, 0.4, 0.0, 0.0, 0.0, 0.8),
    "R": (0.18, -0.35, 0.45, 0.0, 0.0, 1.0), "W": (0.1, -0.8, 0.9, 0.0, 0.0, 2.0),
    "AA": (0.9, 0.05, 0.0, 0.0, 0.0, 1.0), "AE": (0.75, 0.45, 0.0, 0.0, 0.0, 1.0),
    "AH": (0.6, 0.1, 0.0, 0.0, 0.0, 0.9), "AO": (0.7, -0.4, 0.4, 0.0, 0.0, 1.0),
    "AW": (0.75, -0.2, 0.3, 0.0, 0.0, 1.0), "AY": (0.8, 0.3, 0.0, 0.0, 0.0, 1.0),
    "EH": (0.5, 0.4, 0.0, 0.0, 0.0, 0.9), "ER": (0.3, -0.3, 0.4, 0.0, 0.0, 0.9),
    "EY": (0.42, 0.5, 0.0, 0.0, 0.0, 0.9), "IH": (0.3, 0.5, 0.0, 0.0, 0.0, 0.8),
    "IY": (0.2, 0.7, 0.0, 0.0, 0.0, 0.9), "OW": (0.5, -0.6, 0.6, 0.0, 0.0, 1.0),
    "OY": (0.5, -0.5, 0.5, 0.0, 0.0, 1.0), "UH": (0.35, -0.5, 0.5, 0.0, 0.0, 0.9),
    "UW": (0.2, -0.8, 0.9, 0.0, 0.0, 1.2), "AX": (0.35, 0.1, 0.0, 0.0, 0.0, 0.5),
}
# fmt: on

_CORNERS = [48, 54, 60, 64]
_LIPS = list(range(48, 68))

# Units: normalized landmarks, ears 2 apart (a mouth is about 0.75 wide).
JAW_DROP = 0.36  # open vowels keep their opening through the smoothing
SPREAD = 0.06
PROTRUSION = 0.12
DECAY_PER_S = 90.0
# Relative decay rate per parameter: rounding and spreading are anticipated furthest.
_PARAMETER_REACH = np.array([1.0, 0.45, 0.45, 1.0, 1.0])
# How much a phone's lip shape (spread, protrusion) matters to it, relative to its jaw.
_LIP_CARE = {
    p: 0.15 for p in ("T", "D", "N", "L", "S", "Z", "K", "G", "NG", "HH", "DX", "TH", "DH", "Y")
}
"""Dominance decay rate outside a phone, per second, times sqrt(strength)."""
FINE_RATE = 200  # Hz: the clock the dominance blend is computed on
_CHUNK = 2_000  # fine samples per blend (bounds the (T, n, 5) dominance array)
INERTIA_S = np.array([0.035, 0.045, 0.045, 0.018, 0.02])
"""Zero-phase smoothing (Gaussian sigma, seconds) per parameter, in PARAMETERS order. The jaw
keeps syllable rhythm (68 % at 4 Hz) but not phone-rate jitter (1 % at 15 Hz): the inner-lip
gap then correlates 0.88 with itself one frame later (the bare dominance blend: 0.75, a mouth
that jumps between phone targets within a frame; `benchmarks/teacher_motion.py`). Lip shape
is slower; closure and labiodental contact are quick, so every p, b and m still shuts the
lips."""


@dataclass(frozen=True, slots=True)
class Tracks:
    """Articulatory parameter tracks: values (T, 5) in PARAMETERS order at 30 fps."""

    values: np.ndarray

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[:, PARAMETERS.index(name)]


def frame_times(duration_s: float) -> np.ndarray:
    frames = int(np.ceil(round(duration_s * FRAME_RATE, 9)))
    return np.arange(frames) / FRAME_RATE


def articulation(phones: list[Phone], duration_s: float | None = None) -> Tracks:
    """Dominance-blended viseme parameters, smoothed by the articulators' inertia, at every
    frame time.

    The blend is computed on a fine clock (``FINE_RATE``) so that phones shorter than a frame
    are not missed or hit by chance, then each parameter is smoothed with a zero-phase
    Gaussian (``INERTIA_S``): lips and jaw cannot follow phone boundaries within a frame, and
    they move ahead of an acoustic boundary as much as after it (the sound is the result of
    the shape). Closures stay crisp enough to be reached on every p, b and m.
    """
    duration_s = phones[-1].end_s if duration_s is None else duration_s
    t = frame_times(duration_s)
    if not phones:
        return Tracks(np.zeros((len(t), len(PARAMETERS))))
    fine_t = np.arange(int(np.ceil(duration_s * FINE_RATE)) + 1) / FINE_RATE
    fine = np.concatenate(
        [_dominance_blend(phones, fine_t[i : i + _CHUNK]) for i in range(0, len(fine_t), _CHUNK)]
    )
    smoothed = np.stack(
        [
            ndimage.gaussian_filter1d(fine[:, k], sigma * FINE_RATE, mode="nearest")
            if sigma > 0
            else fine[:, k]  # no inertia: the bare blend
            for k, sigma in enumerate(INERTIA_S)
        ],
        axis=1,
    )
    values = np.stack([np.interp(t, fine_t, smoothed[:, k]) for k in range(len(PARAMETERS))], 1)
    return Tracks(values)


def _dominance_blend(phones: list[Phone], t: np.ndarray) -> np.ndarray:
    """(T, 5) Cohen-Massaro blend of the phones' viseme targets at times ``t`` (seconds)."""
    targets = np.array([VISEMES[p.phoneme][:5] for p in phones])  # (n, 5)
    strength = np.array([VISEMES[p.phoneme][5] for p in phones])[:, None] * np.array(
        [[_LIP_CARE.get(p.phoneme, 1.0) if k in (1, 2) else 1.0 for k in range(5)] for p in phones]
    )  # (n, 5): tongue consonants barely care how round the lips are
    centre = np.array([(p.start_s + p.end_s) / 2 for p in phones])
    half = np.array([(p.end_s - p.start_s) / 2 for p in phones])
    # Full dominance inside the phone, then exponential decay outside it; strong phones decay
    # faster (they are reached and left crisply) and weigh more. Lip rounding spreads further.
    outside = np.maximum(np.abs(t[:, None] - centre[None, :]) - half[None, :], 0.0)  # (T, n)
    rate = DECAY_PER_S * np.sqrt(strength) * _PARAMETER_REACH[None, :]  # (n, 5)
    dominance = strength[None] * np.exp(-rate[None] * outside[..., None])  # (T, n, 5)
    return (dominance * targets[None]).sum(axis=1) / np.maximum(dominance.sum(axis=1), 1e-9)


def emotion_offsets(emotion: np.ndarray) -> np.ndarray:
    """(110, 3) landmark offsets of a blend of the 8 MEAD emotions (intensities in [0, 1])."""
    e = dict(zip(EMOTIONS, np.asarray(emotion, np.float64), strict=True))
    d = np.zeros((SPARSE_POINTS, 3))
    brows_r, brows_l = list(range(17, 22)), list(range(22, 27))
    inner_brows = [20, 21, 22, 23]
    d[[48, 60], 1] += -0.05 * e["happy"] + 0.045 * e["sad"] - 0.03 * e["contemptuous"]
    d[[54, 64], 1] += -0.05 * e["happy"] + 0.045 * e["sad"]
    d[[48, 60], 0] += -0.03 * e["happy"] - 0.02 * e["fearful"]
    d[[54, 64], 0] += 0.03 * e["happy"] + 0.02 * e["fearful"]
    d[brows_r + brows_l, 1] += -0.08 * e["surprised"] - 0.03 * e["fearful"] + 0.05 * e["angry"]
    d[inner_brows, 1] += -0.04 * e["sad"] - 0.03 * e["fearful"] + 0.03 * e["disgusted"]
    d[[20, 21], 0] += 0.02 * e["angry"]
    d[[22, 23], 0] -= 0.02 * e["angry"]
    d[IBUG_UPPER_OUTER_LIP + IBUG_UPPER_INNER_LIP, 1] += -0.03 * e["disgusted"]
    d[JAW + IBUG_LOWER_OUTER_LIP + IBUG_LOWER_INNER_LIP, 1] += 0.06 * e["surprised"]
    return d


def landmark_targets(
    phones: list[Phone],
    identity: np.ndarray,
    emotion: np.ndarray | None = None,
    duration_s: float | None = None,
) -> np.ndarray:
    """Per-frame normalized landmarks (T, 110, 3) for a speaker with rest landmarks
    ``identity`` (110, 3), speaking ``phones`` with an ``emotion`` (8,) held throughout; the
    lips of a parted rest part again while idle."""
    tracks = articulation(phones, duration_s).values
    return landmarks_from_tracks(tracks, identity, emotion, phone_relaxation(phones, len(tracks)))


def speaking_frames(phones: list[Phone], frames: int) -> np.ndarray:
    """(frames,) bool: whether each frame's time lies in a phone other than silence."""
    t = np.arange(frames) / FRAME_RATE
    speaking = np.zeros(frames, bool)
    for p in phones:
        if p.phoneme != "SIL":
            speaking |= (t >= p.start_s) & (t < p.end_s)
    return speaking


def phone_relaxation(phones: list[Phone], frames: int) -> np.ndarray:
    """(frames,) how much of a parted rest's own parting shows (``spacelive.motion.idle``)."""
    return relaxation_track(speaking_frames(phones, frames))


def landmarks_from_tracks(
    tracks: np.ndarray,
    identity: np.ndarray,
    emotion: np.ndarray | None = None,
    relaxation: np.ndarray | None = None,
) -> np.ndarray:
    """Articulation tracks (T, 5) -> landmarks (T, 110, 3) around the rest ``identity``
    with its lips closed, plus ``relaxation`` (T,) times its own parting (none: 0)."""
    tracked = Tracks(np.asarray(tracks, np.float64))
    rest = closed_mouth(identity)
    frames = np.repeat(rest[None], len(tracked.values), axis=0)
    if relaxation is not None:
        frames += np.asarray(relaxation, np.float64)[:, None, None] * mouth_parting(identity)
    if emotion is not None:
        frames += emotion_offsets(emotion)[None]
    jaw = JAW_DROP * tracked["open"] * (1 - tracked["closure"]) * (1 - 0.7 * tracked["labiodental"])
    # Jaw opening: chin and lower lip drop, the upper lip lifts a little.
    frames[:, JAW, 1] += jaw[:, None] * CHIN_WEIGHTS[None]
    frames[:, IBUG_LOWER_OUTER_LIP + IBUG_LOWER_INNER_LIP, 1] += jaw[:, None]
    frames[:, [57, 66], 1] += 0.1 * jaw[:, None]  # the lower lip's centre drops most
    frames[:, IBUG_UPPER_INNER_LIP + IBUG_UPPER_OUTER_LIP, 1] -= 0.1 * jaw[:, None]
    frames[:, _CORNERS, 1] += 0.4 * jaw[:, None]
    # Spread and rounding: corners out or in; rounding pushes the lips forward.
    spread = SPREAD * tracked["spread"] - 0.5 * SPREAD * tracked["protrude"]
    centre_x = rest[_LIPS, 0].mean()
    frames[:, _LIPS, 0] += spread[:, None] * (rest[_LIPS, 0] - centre_x)[None] / 0.35
    frames[:, _LIPS, 2] += PROTRUSION * tracked["protrude"][:, None]
    # Bilabial closure: inner lips meet on the line between them.
    meet = (frames[:, IBUG_UPPER_INNER_LIP, 1] + frames[:, IBUG_LOWER_INNER_LIP, 1]) / 2
    close = tracked["closure"][:, None]
    for inner, outer in (
        (IBUG_UPPER_INNER_LIP, IBUG_UPPER_OUTER_LIP),
        (IBUG_LOWER_INNER_LIP, IBUG_LOWER_OUTER_LIP),
    ):
        shift = close * (meet - frames[:, inner, 1])
        frames[:, inner, 1] += shift
        frames[:, outer[1:4], 1] += shift
    # Labiodental: the lower lip rises under the upper teeth and tucks back.
    lab = tracked["labiodental"][:, None]
    lift = frames[:, IBUG_LOWER_INNER_LIP, 1] - (frames[:, IBUG_UPPER_INNER_LIP, 1] + 0.02)
    frames[:, IBUG_LOWER_INNER_LIP, 1] -= lab * np.maximum(lift, 0)
    frames[:, IBUG_LOWER_OUTER_LIP[1:4], 1] -= lab * np.maximum(lift, 0) * 0.8
    frames[:, IBUG_LOWER_INNER_LIP + IBUG_LOWER_OUTER_LIP, 2] -= 0.05 * lab
    return frames.astype(np.float32)
