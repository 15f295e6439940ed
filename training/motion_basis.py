"""Fit the keypoint stream's expression basis to a model directory's own stages.

The basis (``spacelive.motion.keypoints.MotionBasis``) is the principal components of the faces the
motion loop makes: it is run on utterances of a corpus (training voices only), over the
public-domain portraits, with random emotions, mouth scales, blink rates and gazes (some
with saccades), and the expression of every frame is collected. Written next to the stages
as ``motion_basis.npz``.
"""

import logging
from pathlib import Path

import numpy as np

from spacelive.face.landmarks import EMOTIONS
from spacelive.motion.controls import MAX_MOUTH_SCALE, ControlUpdate
from spacelive.motion.keypoints import BASIS_FILE, MotionBasis
from spacelive.motion.loop import MotionModel

log = logging.getLogger(__name__)


def expressions(
    motion: MotionModel, avatars: list, mfccs: list[np.ndarray], seed: int = 0
) -> np.ndarray:
    """(N, 478, 3) expression of every frame of every utterance (one portrait each, in turn;
    a random emotion for most, a random mouth scale for some, blinks, a random gaze)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, mfcc in enumerate(mfccs):
        emotion = np.zeros(len(EMOTIONS), np.float32)
        if rng.random() < 0.7:
            emotion[rng.integers(1, len(EMOTIONS))] = rng.uniform(0.3, 1.0)
        mouth_scale = float(rng.uniform(1.0, MAX_MOUTH_SCALE)) if rng.random() < 0.3 else 1.0
        gaze = tuple(float(g) for g in rng.uniform(-1, 1, 2) * (rng.random() < 0.6))
        update = ControlUpdate(
            emotion=emotion,
            mouth_scale=mouth_scale,
            blinks_per_minute=float(rng.uniform(10, 60)),
            gaze=(gaze[0], gaze[1]),
            saccades=bool(rng.random() < 0.3),
        )
        state = motion.new_state(avatars[i % len(avatars)], update, seed=i)
        out += [frame.expression for frame in motion.run(state, mfcc)]
    return np.array(out, np.float32)


def fit_basis(
    motion: MotionModel, avatars: list, mfccs: list[np.ndarray], models: Path, components: int = 40
) -> dict:
    """Fit, write ``models/motion_basis.npz``; returns what it measured on every other frame
    held out of the fit."""
    faces = expressions(motion, avatars, mfccs)
    basis = MotionBasis.fit(faces[::2], components)
    held = faces[1::2].reshape(len(faces[1::2]), -1)
    projected = (held - basis.mean) @ basis.components.T @ basis.components + basis.mean
    error = np.abs(projected - held)
    spread = ((held - held.mean(axis=0)) ** 2).sum()
    basis.save(Path(models) / BASIS_FILE)
    return {
        "frames": len(faces),
        "components": components,
        "held_out_max_error": float(error.max()),
        "held_out_mean_error": float(error.mean()),
        "unexplained_variance": float(((held - projected) ** 2).sum() / spread),
    }


def corpus_mfccs(folder: Path, utterances: int) -> list[np.ndarray]:
    """MFCC of the first ``utterances`` utterances of a corpus (training voices only)."""
    from spacelive.training.corpus import HELD_OUT_VOICES

    out: list[np.ndarray] = []
    for shard in sorted(Path(folder).glob("shard-*.npz")):
        with np.load(shard) as stored:
            voices, offsets, mfcc = stored["voices"], stored["frame_offsets"], stored["mfcc"]
        for i, voice in enumerate(voices):
            if str(voice) in HELD_OUT_VOICES:
                raise ValueError(f"{shard} holds held-out voice {voice}; refusing to fit on it")
            out.append(mfcc[offsets[i] : offsets[i + 1]].astype(np.float32))
            if len(out) >= utterances:
                return out
    if not out:
        raise ValueError(f"no shards in {folder}; run `spacelive data synth` first")
    return out
