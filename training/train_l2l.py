"""Training Landmarks2Latents: `spacelive train l2l --data DIR --models DIR`.

L2L (appendix A.3) maps posed landmarks + audio + source keypoints + its previous keypoints +
emotion to the renderer's dense keypoints (the 478-point mesh in crop coordinates). Its
teacher is the geometry the renderer was built on (``spacelive.transfer``): the speaking
face's landmark motion carried to every mesh point in the face's frontal frame, then the
head's pose applied rigidly to all of them.

Every example draws:

* a face: the generic face model or a public-domain portrait's detected mesh (or its mirror
  image), frontalized, with a random smooth change of shape;
* a source pose for the portrait (yaw up to 25 degrees, pitch 12, roll 8; the scale and
  position of the crop policy);
* speech: a window of a corpus utterance (training voices only), its mouth from the
  lip-sync teacher, its head motion from the head-motion teacher, an emotion, and some
  blinks and a gaze;

and the audio encoder's features for that window (the bundled encoder, frozen, stepped
through its ONNX graph as a stream steps it; see ``encoder_features.encode_audio``).

Loss: L1 on the keypoints in pixels of the 512 frame, plus a velocity L1. In ``self_feed`` of
the batches the model runs free on its own previous keypoints (back-propagated through), in
the others it is given the teacher's with noise. Adam, warm-up then cosine decay; resumable
checkpoints, CSV log and loss PNG as for the other stages.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spacelive import FRAME_SIZE
from spacelive.eyes import pose_eyes
from spacelive.face import pose_landmarks, rotation_from_angles
from spacelive.face_model import face_model, mirror_permutation
from spacelive.landmarks import EMOTIONS, LEFT_EAR, MESH_TO_SPARSE, RIGHT_EAR
from spacelive.models.landmarks2latents import Landmarks2Latents
from spacelive.models.widths import width_named
from spacelive.runners import StageSet
from spacelive.training.head_motion import head_motion
from spacelive.training.identities import smooth_deformation
from spacelive.training.run import TrainingRun
from spacelive.training.teacher import articulation, landmarks_from_tracks, phone_relaxation
from spacelive.training.train_posegen import PoseUtterance, load_corpus
from spacelive.transfer import DenseTransfer

log = logging.getLogger(__name__)

PIXELS = FRAME_SIZE / 2
"""Crop units to pixels of the 512 frame."""


@dataclass
class L2LTrainConfig:
    width: str = "realtime"
    steps: int = 2_000
    batch: int = 16
    window: int = 90  # frames (3 s)
    lr_start: float = 1e-5
    lr_peak: float = 5e-4
    warmup: int = 100
    velocity_weight: float = 2.0
    self_feed: float = 0.5  # share of batches run on the model's own previous keypoints
    input_noise: float = 0.5  # pixels of noise on the teacher's previous keypoints
    neutral_fraction: float = 0.3
    checkpoint_every: int = 100
    seed: int = 0


def face_bank(cache: Path | None = None) -> np.ndarray:
    """(K, 478, 3) frontal normalized meshes (ears 2 apart): the generic face model and each
    public-domain portrait shipped in a registry package, and their mirror images."""
    if cache is not None and cache.exists():
        return np.load(cache)
    from spacelive.face import FaceAnalyzer, normalize_landmarks
    from spacelive.render_checks import standard_portraits

    analyzer = FaceAnalyzer()
    faces = [face_model()]
    for data in standard_portraits().values():
        avatar = analyzer.analyze(data)
        faces.append(normalize_landmarks(avatar.kp_source, avatar.pose).astype(np.float64))
    bank = []
    for face in faces:
        bank += [face, (face * np.array([-1.0, 1.0, 1.0]))[mirror_permutation(face)]]
    out = np.array(bank, np.float32)
    if cache is not None:
        np.save(cache, out)
    return out


def perturb_face(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(478, 3) frontal mesh with a random width, height and smooth change of shape, ears
    kept 2 apart."""
    out = face.astype(np.float64).copy()
    out[:, 0] *= rng.uniform(0.92, 1.08)
    out[:, 1] *= rng.uniform(0.92, 1.08)
    out += smooth_deformation(out, rng)
    ears = out[MESH_TO_SPARSE[[LEFT_EAR, RIGHT_EAR]], :2]
    return (out * (2.0 / np.linalg.norm(ears[0] - ears[1]))).astype(np.float32)


@dataclass
class L2LBatch:
    audio: torch.Tensor  # (B, W, C) audio encoder features
    landmarks: torch.Tensor  # (B, W, 110, 3) posed landmarks, crop coordinates
    kp_source: torch.Tensor  # (B, 478, 3)
    emotion: torch.Tensor  # (B, W, 8)
    target: torch.Tensor  # (B, W, 478, 3) the teacher's keypoints


def teacher_example(
    face: np.ndarray,
    utterance: PoseUtterance,
    start: int,
    window: int,
    emotion: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One example from a frontal mesh (478, 3): (posed landmarks (W, 110, 3), kp_source
    (478, 3), teacher keypoints (W, 478, 3)), all in crop coordinates."""
    frames = len(utterance.features)
    sparse0 = face[MESH_TO_SPARSE]
    tracks = articulation(utterance.phones, frames / 30).values[:frames]
    tracks = np.concatenate([tracks, np.repeat(tracks[-1:], frames - len(tracks), axis=0)])
    # As the motion loop does: speech around the closed rest, parted again while idle.
    idle = phone_relaxation(utterance.phones, frames)
    spoken = landmarks_from_tracks(tracks, sparse0, emotion, idle)
    spoken = spoken[start : start + window]
    blink = int(rng.integers(-window, window))  # half the examples blink inside the window
    gaze = rng.uniform(-0.5, 0.5, 2) if rng.random() < 0.5 else np.zeros(2)
    for k in range(len(spoken)):
        closure = max(0.0, 1 - abs(k - blink) / 2) if blink >= 0 else 0.0
        spoken[k] = pose_eyes(spoken[k], closure, gaze)
    # The portrait's pose, as the crop policy leaves it, and the head's motion from there.
    yaw, pitch, roll = np.radians(rng.uniform(-1, 1, 3) * [25, 12, 8])
    source_rotation = rotation_from_angles(yaw, pitch, roll)
    source_translation = np.array([rng.normal(0, 0.03), rng.normal(0.05, 0.03), 0.0])
    scale = rng.uniform(0.3, 0.5)
    motion = head_motion(utterance.phones, utterance.audio, frames, rng)[start : start + window]
    rotation = (
        rotation_from_angles(motion[:, 0], motion[:, 1], motion[:, 2]) @ source_rotation
    ).astype(np.float64)
    translation = source_translation + motion[:, 3:]
    scales = np.full((len(spoken), 1, 1), scale)
    transfer = DenseTransfer(face, sparse0, face[:, :2])
    posed = pose_landmarks(spoken, rotation, translation, scales)
    target = pose_landmarks(transfer.apply(spoken), rotation, translation, scales)
    kp_source = pose_landmarks(
        face[None], source_rotation[None], source_translation[None], scales[:1]
    )[0]
    return posed, kp_source, target


def sample_batch(
    corpus: list[PoseUtterance], bank: np.ndarray, rng: np.random.Generator, config: L2LTrainConfig
) -> L2LBatch:
    audio: list[np.ndarray] = []
    landmarks, sources, emotions, targets = [], [], [], []
    while len(audio) < config.batch:
        u = corpus[rng.integers(len(corpus))]
        if len(u.features) < config.window:
            continue
        start = int(rng.integers(0, len(u.features) - config.window + 1))
        emotion = np.zeros(len(EMOTIONS), np.float32)
        if rng.random() >= config.neutral_fraction:
            emotion[rng.integers(1, len(EMOTIONS))] = rng.uniform(0.3, 1.0)
        face = perturb_face(bank[rng.integers(len(bank))], rng)
        posed, kp_source, target = teacher_example(face, u, start, config.window, emotion, rng)
        audio.append(u.features[start : start + config.window])
        landmarks.append(posed)
        sources.append(kp_source)
        emotions.append(np.repeat(emotion[None], config.window, axis=0))
        targets.append(target)
    stacked = [
        np.stack(a).astype(np.float32) for a in (audio, landmarks, sources, emotions, targets)
    ]
    return L2LBatch(*(torch.from_numpy(a) for a in stacked))


def loss_terms(predicted: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(position L1, velocity L1) of (B, T, 478, 3) keypoints, in pixels."""
    error = (predicted - target) * PIXELS
    return error.abs().mean(), error.diff(dim=1).abs().mean()


def train(
    data: Path,
    stages: StageSet,
    out: Path,
    config: L2LTrainConfig,
    init_from: Path | None = None,
) -> dict:
    """Train (or resume) into ``out``; returns the final summary."""
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    corpus = load_corpus(data, stages, out / "features.npz")
    bank = face_bank(out / "faces.npy")
    model = Landmarks2Latents(width_named(config.width))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr_start)
    run = TrainingRun(
        out, config, model, optimizer, LOG_COLUMNS, "L2L", ("loss", "position"), init_from
    )
    model.train()
    loss = torch.zeros(())
    while not run.done:
        b = sample_batch(corpus, bank, run.rng, config)
        run.begin_step()
        if run.rng.random() < config.self_feed:
            fed = None  # streaming feeds L2L its own previous keypoints
        else:
            fed = b.target + config.input_noise / PIXELS * torch.randn_like(b.target)
        predicted = model(b.audio, b.landmarks, b.kp_source, b.emotion, teacher=fed)
        position, velocity = loss_terms(predicted, b.target)
        loss = position + config.velocity_weight * velocity
        run.finish_step(loss, {"position": position.item(), "velocity": velocity.item()})
    run.close()
    return {"steps": run.step, "final_loss": float(loss.item())}


LOG_COLUMNS = ("loss", "position", "velocity", "lr")
