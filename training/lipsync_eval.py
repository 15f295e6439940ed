"""Lip-sync evaluation: `spacelive eval lipsync --audio WAV --alignment FILE --format F`.

Runs the exported Speech2Landmarks in streaming mode on the audio and compares its landmarks
with the teacher's targets from the alignment, with the paper's metrics:

* M-P, M-V: mouth landmark position and velocity MAE, each frame normalized so the mouth
  corners sit at (-1, 0) and (1, 0);
* F-P, F-V: the same for all 68 points, normalized with the ears 2 apart;
* mouth_open_corr: Pearson correlation of the inner-lip gap.

The energy baseline opens the jaw in proportion to the smoothed log energy (MFCC c0, centred
5-frame mean: the model's own lookahead, over the utterance's 5th percentile), with its scale
fitted on training data.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spacelive.face.analysis import Avatar
from spacelive.face.landmarks import inner_lip_gap
from spacelive.media.audio import frame_count, offline_mfcc
from spacelive.motion.controls import ControlUpdate
from spacelive.motion.idle import audio_relaxation
from spacelive.motion.loop import MotionModel
from spacelive.training.alignment import Phone
from spacelive.training.teacher import PARAMETERS, articulation, landmarks_from_tracks

BASELINE_PATH = Path(__file__).resolve().parent / "energy_baseline.json"
SMOOTHING_FRAMES = 5
DYNAMIC_RANGE = 12.0  # natural-log units of energy below the loudest frame that still count


def _similarity_normalize(points: np.ndarray, left: int, right: int) -> np.ndarray:
    """(T, N, 2) -> each frame moved, rotated and scaled so points[left] -> (-1, 0) and
    points[right] -> (1, 0)."""
    a, b = points[:, left], points[:, right]
    centre = (a + b) / 2
    axis = (b - a) / 2
    scale = np.linalg.norm(axis, axis=1)
    cos, sin = axis[:, 0] / scale, axis[:, 1] / scale
    rel = points - centre[:, None]
    x = (rel[..., 0] * cos[:, None] + rel[..., 1] * sin[:, None]) / scale[:, None]
    y = (-rel[..., 0] * sin[:, None] + rel[..., 1] * cos[:, None]) / scale[:, None]
    return np.stack([x, y], axis=-1)


def metrics(predicted: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """The paper's landmark metrics between two (T, 110, 3) sequences."""
    mouth_p = _similarity_normalize(predicted[:, 48:68, :2], 0, 6)
    mouth_t = _similarity_normalize(target[:, 48:68, :2], 0, 6)
    face_p = _similarity_normalize(predicted[:, :68, :2], 0, 16)
    face_t = _similarity_normalize(target[:, :68, :2], 0, 16)
    gap_p, gap_t = inner_lip_gap(predicted), inner_lip_gap(target)
    corr = (
        float(np.corrcoef(gap_p, gap_t)[0, 1]) if gap_p.std() > 1e-9 and gap_t.std() > 1e-9 else 0.0
    )
    return {
        "M-P": float(np.abs(mouth_p - mouth_t).mean()),
        "M-V": float(np.abs(np.diff(mouth_p, axis=0) - np.diff(mouth_t, axis=0)).mean()),
        "F-P": float(np.abs(face_p - face_t).mean()),
        "F-V": float(np.abs(np.diff(face_p, axis=0) - np.diff(face_t, axis=0)).mean()),
        "mouth_open_corr": corr,
    }


def smoothed_energy(mfcc: np.ndarray) -> np.ndarray:
    """Smoothed log energy above the utterance's own floor (its 5th percentile): the baseline
    does not have to know how loud the speaker or how noisy the room is."""
    log_energy = mfcc[:, 0].astype(np.float64)
    log_energy = np.maximum(log_energy, log_energy.max() - DYNAMIC_RANGE)  # digital silence
    kernel = np.ones(SMOOTHING_FRAMES) / SMOOTHING_FRAMES
    energy = np.convolve(log_energy, kernel, mode="same")
    return energy - np.percentile(energy, 5)


def fit_energy_baseline(corpus_folder: Path, max_utterances: int = 400) -> dict:
    """Least-squares jaw opening from smoothed energy, on training utterances."""
    from spacelive.training.train_s2l import Corpus

    corpus = Corpus(corpus_folder)
    energy, opening = [], []
    for mfcc, tracks in list(zip(corpus.mfcc, corpus.tracks, strict=True))[:max_utterances]:
        energy.append(smoothed_energy(mfcc))
        opening.append(tracks[:, PARAMETERS.index("open")])
    x, y = np.concatenate(energy), np.concatenate(opening)
    slope, intercept = np.polyfit(x, y, 1)
    return {
        "slope": float(slope),
        "intercept": float(intercept),
        "frames": int(len(x)),
        "fitted_on": str(corpus_folder),
    }


def energy_baseline(
    mfcc: np.ndarray, identity: np.ndarray, fit: dict, relaxation: np.ndarray | None = None
) -> np.ndarray:
    """(T, 110, 3) the baseline's landmarks around the closed-lipped rest, plus ``relaxation``
    (T,) of a parted rest's own parting (``spacelive.motion.idle``)."""
    opening = np.clip(fit["slope"] * smoothed_energy(mfcc) + fit["intercept"], 0.0, 1.0)
    tracks = np.zeros((len(mfcc), len(PARAMETERS)))
    tracks[:, PARAMETERS.index("open")] = opening
    return landmarks_from_tracks(tracks, identity, relaxation=relaxation)


def stream_landmarks(motion: MotionModel, avatar: Avatar, mfcc: np.ndarray) -> np.ndarray:
    """S2L landmarks (T, 110, 3) as the server computes them, frame by frame; without blinks,
    which are a control of their own (the teacher has none)."""
    state = motion.new_state(avatar, ControlUpdate(blinks_per_minute=0.0))
    return np.array([frame.landmarks for frame in motion.run(state, mfcc)])


def silence_drift(motion: MotionModel, avatar: Avatar, seconds: float = 3.0) -> float:
    """How far the inner lips have moved from the portrait's own after ``seconds`` of digital
    silence (normalized units, ears 2 apart). A model that keeps the face at rest in silence
    scores about 0."""
    landmarks = stream_landmarks(motion, avatar, offline_mfcc(np.zeros(int(16_000 * seconds))))
    return float(inner_lip_gap(landmarks[-1:])[0] - inner_lip_gap(avatar.landmarks0[None])[0])


@dataclass(frozen=True, slots=True)
class Utterance:
    """One evaluated utterance: landmarks (T, 110, 3) of the model, the teacher and the
    energy baseline, frame for frame."""

    predicted: np.ndarray
    target: np.ndarray
    baseline: np.ndarray


def landmark_tracks(
    motion: MotionModel,
    avatar: Avatar,
    samples16k: np.ndarray,
    phones: list[Phone],
    fit: dict | None = None,
) -> Utterance:
    """The model's streamed landmarks, the teacher's targets and the energy baseline for one
    utterance (16 kHz float audio).

    Whether the portrait is idle (its parted lips part again) is the server's call from the
    audio (``spacelive.motion.idle``), not lip sync: the teacher's targets and the baseline take it
    from the same audio by the same rule, so that the metrics compare the motion of speech.
    """
    fit = fit or json.loads(BASELINE_PATH.read_text())
    mfcc = offline_mfcc(samples16k)
    frames = frame_count(len(samples16k), 16_000)
    tracks = articulation(phones, len(samples16k) / 16_000).values[:frames]
    idle = audio_relaxation(mfcc[:, 0], motion.lookahead)[:frames]
    target = landmarks_from_tracks(tracks, avatar.landmarks0, relaxation=idle[: len(tracks)])
    return Utterance(
        predicted=stream_landmarks(motion, avatar, mfcc)[:frames],
        target=target[:frames],
        baseline=energy_baseline(mfcc, avatar.landmarks0, fit, idle)[:frames],
    )


def evaluate(
    motion: MotionModel,
    avatar: Avatar,
    samples16k: np.ndarray,
    phones: list[Phone],
    fit: dict | None = None,
) -> dict:
    """Model and energy-baseline metrics for one utterance (``landmark_tracks``)."""
    u = landmark_tracks(motion, avatar, samples16k, phones, fit)
    return {
        "model": metrics(u.predicted, u.target),
        "energy_baseline": metrics(u.baseline, u.target),
        "frames": len(u.target),
    }
