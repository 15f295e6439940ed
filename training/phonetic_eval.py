"""Phonetic lip sync: `spacelive eval phonetic --audio WAV --alignment FILE --format F`.

Teacher-independent: it asks only what a viewer checks against the phones. Each utterance's
inner-lip gap is scored twice, on the model's own landmarks and on the mesh the face detector
finds again on every rendered frame (``Track``). Gaps are judged against the clip's own 95th
percentile gap (``p95``), so the two sources, in their own units, answer alike:

* ``bilabial_closure``: the share of p, b, m whose smallest gap within the phone (one frame
  either side) is at most CLOSED_SHARE of p95: the lips met;
* ``vowel_shut``: the share of open vowels (aa ae ah ao aw ay) whose largest gap within the
  phone is at most CLOSED_SHARE of p95: false closures;
* ``open_vs_bilabial_auc``: how well an open vowel's largest gap ranks above a bilabial's
  smallest one (0.5: no better than chance);
* ``labiodental_contact``: the share of f and v whose smallest gap is at most CONTACT_SHARE of
  p95: the lower lip comes up to the upper teeth, just under the upper lip;
* ``alveolar_closed`` (no target: reported so that a closure that fires on everything shows):
  the share of t, d, n, s, z, l whose smallest gap within the phone is at most CLOSED_SHARE
  of p95;
* ``silence_closed``: the share of frames of silence (inside pauses of at least MIN_PAUSE_S,
  two frames clear of speech) whose gap is at most CLOSED_SHARE of p95;
* ``lag_frames``: the shift (frames, within MAX_LAG) that best correlates the gap with the
  audio's envelope; positive when the mouth follows the sound.

Frame k covers [k / 30, (k + 1) / 30) s, as the server's frame clock. Shares are pooled over
phones (``pool``): a corpus of utterances scores each phone once.
"""

from dataclasses import dataclass, field, fields

import numpy as np

from spacelive import FRAME_RATE
from spacelive.media.audio import frame_count
from spacelive.training.alignment import Phone

CLOSED_SHARE = 0.25
CONTACT_SHARE = 0.4
MIN_PAUSE_S = 0.25
MAX_LAG = 6
BILABIALS = frozenset({"P", "B", "M"})
OPEN_VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY"})
LABIODENTALS = frozenset({"F", "V"})
ALVEOLARS = frozenset({"T", "D", "N", "S", "Z", "L"})


@dataclass(slots=True)
class Counts:
    """Per-phone evidence of one or more utterances (``score``), pooled by ``pool``."""

    bilabial_min: list[float] = field(default_factory=list)  # smallest gap / p95, per phone
    vowel_max: list[float] = field(default_factory=list)  # largest gap / p95, per open vowel
    labiodental_min: list[float] = field(default_factory=list)
    alveolar_min: list[float] = field(default_factory=list)
    silence: list[float] = field(default_factory=list)  # gap / p95, per frame of pause
    lags: list[int] = field(default_factory=list)  # one per utterance

    def extend(self, other: "Counts") -> None:
        for f in fields(self):
            getattr(self, f.name).extend(getattr(other, f.name))


def _frames_of(phone: Phone, frames: int, margin: int) -> slice:
    """The frames a phone overlaps, ``margin`` more on each side, at least one."""
    first = int(np.floor(phone.start_s * FRAME_RATE)) - margin
    last = int(np.ceil(phone.end_s * FRAME_RATE)) - 1 + margin
    first, last = max(first, 0), min(max(last, first), frames - 1)
    return slice(first, last + 1)


def envelope(samples16k: np.ndarray) -> np.ndarray:
    """(T,) the audio's log RMS per frame of the frame clock."""
    frames = frame_count(len(samples16k), 16_000)
    edges = np.round(np.arange(frames + 1) * 16_000 / FRAME_RATE).astype(int)
    rms = [
        np.sqrt(np.mean(samples16k[a:b] ** 2)) if b > a else 0.0
        for a, b in zip(edges[:-1], edges[1:], strict=True)
    ]
    return np.log(np.asarray(rms) + 1e-4)


def best_lag(gap: np.ndarray, loudness: np.ndarray) -> int:
    """The shift (frames) of the gap against the envelope that correlates them best; positive
    when the gap comes later."""
    best, best_corr = 0, -np.inf
    n = min(len(gap), len(loudness))
    for lag in range(-MAX_LAG, MAX_LAG + 1):
        a = gap[max(lag, 0) : n + min(lag, 0)]
        b = loudness[max(-lag, 0) : n - max(lag, 0)]
        if len(a) > 10 and a.std() > 1e-9 and b.std() > 1e-9:
            corr = float(np.corrcoef(a, b)[0, 1])
            if corr > best_corr:
                best, best_corr = lag, corr
    return best


def score(gap: np.ndarray, phones: list[Phone], loudness: np.ndarray) -> Counts:
    """One utterance: gap (T,) in any unit (larger is more open), its phones and envelope."""
    gap = np.asarray(gap, np.float64)
    p95 = max(float(np.percentile(gap, 95)), 1e-9)
    share = gap / p95
    frames = len(gap)
    counts = Counts(lags=[best_lag(gap, loudness)])
    for phone in phones:
        if phone.start_s * FRAME_RATE >= frames:
            continue
        if phone.phoneme in BILABIALS:
            counts.bilabial_min.append(float(share[_frames_of(phone, frames, 1)].min()))
        elif phone.phoneme in LABIODENTALS:
            counts.labiodental_min.append(float(share[_frames_of(phone, frames, 1)].min()))
        elif phone.phoneme in ALVEOLARS:
            counts.alveolar_min.append(float(share[_frames_of(phone, frames, 0)].min()))
        elif phone.phoneme in OPEN_VOWELS:
            counts.vowel_max.append(float(share[_frames_of(phone, frames, 0)].max()))
        elif phone.phoneme == "SIL" and phone.end_s - phone.start_s >= MIN_PAUSE_S:
            inside = _frames_of(phone, frames, -2)
            counts.silence.extend(share[inside].tolist())
    return counts


def _auc(positive: list[float], negative: list[float]) -> float:
    """P(a positive ranks above a negative), ties half."""
    if not positive or not negative:
        return float("nan")
    p, n = np.asarray(positive)[:, None], np.asarray(negative)[None, :]
    return float(np.mean((p > n) + 0.5 * (p == n)))


def pool(counts: Counts) -> dict[str, float]:
    """The figures of pooled counts (NaN where a clip has no such phone)."""

    def share(values: list[float], limit: float) -> float:
        return float(np.mean(np.asarray(values) <= limit)) if values else float("nan")

    return {
        "bilabial_closure": share(counts.bilabial_min, CLOSED_SHARE),
        "vowel_shut": share(counts.vowel_max, CLOSED_SHARE),
        "open_vs_bilabial_auc": _auc(counts.vowel_max, counts.bilabial_min),
        "labiodental_contact": share(counts.labiodental_min, CONTACT_SHARE),
        "alveolar_closed": share(counts.alveolar_min, CLOSED_SHARE),
        "silence_closed": share(counts.silence, CLOSED_SHARE),
        "lag_frames": float(np.median(counts.lags)) if counts.lags else float("nan"),
        "bilabials": float(len(counts.bilabial_min)),
        "open_vowels": float(len(counts.vowel_max)),
        "labiodentals": float(len(counts.labiodental_min)),
        "silence_frames": float(len(counts.silence)),
    }


@dataclass(frozen=True, slots=True)
class Track:
    """One utterance's inner-lip gap (T,), from the model's landmarks and re-detected on the
    rendered frames (NaN where the detector found no face), and the audio's envelope."""

    landmarks: np.ndarray
    redetected: np.ndarray
    loudness: np.ndarray


def track(motion, avatar, samples16k: np.ndarray, renderer, analyzer) -> Track:
    """Speak ``samples16k`` (16 kHz) through the motion stages as the server does (no
    blinks: a control of their own), render every frame and find the face again."""
    from spacelive.face.analysis import crop_to_pixels
    from spacelive.face.landmarks import inner_lip_gap
    from spacelive.face.rig import inner_lip_gap as mesh_gap
    from spacelive.media.audio import offline_mfcc
    from spacelive.motion.controls import ControlUpdate

    frames = frame_count(len(samples16k), 16_000)
    source = renderer.prepare(avatar.image, avatar.mesh_px)
    state = motion.new_state(avatar, ControlUpdate(blinks_per_minute=0.0))
    landmarks, redetected = [], []
    for m in motion.run(state, offline_mfcc(samples16k)):
        landmarks.append(float(inner_lip_gap(m.landmarks)))
        mesh = analyzer.mesh(renderer.render(source, crop_to_pixels(m.keypoints)))
        redetected.append(np.nan if mesh is None else mesh_gap(mesh))
    return Track(
        np.asarray(landmarks[:frames]),
        np.asarray(redetected[:frames]),
        envelope(samples16k)[:frames],
    )


def score_track(t: Track, phones: list[Phone]) -> dict[str, Counts]:
    """Both sources' counts for one utterance. Frames the detector missed take the gap of
    the last frame it found (none missed on the standard portraits)."""
    redetected = t.redetected.copy()
    for i in np.flatnonzero(~np.isfinite(redetected)):
        redetected[i] = redetected[i - 1] if i else np.nanmedian(t.redetected)
    return {
        "landmarks": score(t.landmarks, phones, t.loudness),
        "redetected": score(redetected, phones, t.loudness),
    }
