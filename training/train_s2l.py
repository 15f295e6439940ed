"""Training Speech2Landmarks: `spacelive train s2l --data DIR --width realtime|paper`.

The paper's recipe scaled to a CPU: Adam, warm-up from 1e-5 to 5e-4, then cosine decay to 0;
L1 on the normalized landmarks with extra weight on y, plus an L1 velocity loss. Batches are
random windows of corpus utterances; each example draws a speaker identity and an emotion (one
of the 8 MEAD emotions at a random intensity, or neutral), and the teacher turns the
utterance's articulation tracks into that speaker's landmarks. Teacher forcing feeds the
previous target frame, with noise so the model does not lean on it.

Streaming runs S2L autoregressively on its own output, so part of the batches (``self_feed``)
feed the model's own free-running predictions as the previous frames instead of the teacher's:
trained on teacher frames alone, it drifts once it hears itself.

A progress bar (on a terminal), checkpoints (resumable), a CSV log and a loss-curve PNG go to
the output folder.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spacelive.landmarks import EMOTIONS, MOUTH, SPARSE_POINTS, closed_mouth
from spacelive.models.audio_encoder import AudioEncoder
from spacelive.models.speech2landmarks import Speech2Landmarks
from spacelive.models.widths import width_named
from spacelive.training.corpus import HELD_OUT_VOICES
from spacelive.training.identities import identity_bank, perturb
from spacelive.training.run import TrainingRun
from spacelive.training.teacher import landmarks_from_tracks

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    width: str = "realtime"
    steps: int = 6_000  # about 2 h 45 min at the realtime width on this project's 2-core CPU
    batch: int = 20
    window: int = 150  # frames: 5 s
    lr_start: float = 1e-5
    lr_peak: float = 4e-4
    warmup: int = 400
    y_weight: float = 2.0
    mouth_weight: float = 4.0  # extra weight of the 20 mouth points (48-67) in both losses
    velocity_weight: float = 1.0
    input_noise: float = 0.02
    self_feed: float = 0.2  # share of batches whose previous frames are the model's own output
    neutral_fraction: float = 0.4
    checkpoint_every: int = 250
    seed: int = 0


class Corpus:
    """All utterances of a corpus folder (training voices only), as float32 arrays."""

    def __init__(self, folder: Path):
        self.mfcc: list[np.ndarray] = []
        self.tracks: list[np.ndarray] = []
        self.voices: list[str] = []
        for shard in sorted(Path(folder).glob("shard-*.npz")):
            with np.load(shard) as stored:  # each access of an npz member decompresses it again
                data = {name: stored[name] for name in stored.files}
            offsets = data["frame_offsets"]
            for i, voice in enumerate(data["voices"]):
                if str(voice) in HELD_OUT_VOICES:
                    raise ValueError(f"{shard} holds held-out voice {voice}; refusing to train")
                self.mfcc.append(data["mfcc"][offsets[i] : offsets[i + 1]].astype(np.float32))
                self.tracks.append(data["tracks"][offsets[i] : offsets[i + 1]].astype(np.float32))
                self.voices.append(str(voice))
        if not self.mfcc:
            raise ValueError(f"no shards in {folder}; run `spacelive data synth` first")
        lengths = np.array([len(m) for m in self.mfcc], np.float64)
        self.weights = lengths / lengths.sum()
        stacked = np.concatenate(self.mfcc)
        self.mfcc_mean, self.mfcc_std = stacked.mean(axis=0), stacked.std(axis=0) + 1e-3

    @property
    def hours(self) -> float:
        return sum(len(m) for m in self.mfcc) / 30 / 3600


def sample_batch(corpus: Corpus, bank: np.ndarray, rng: np.random.Generator, config: TrainConfig):
    """(mfcc (B, W, 40), landmarks0 (B, 110, 3), emotion (B, W, 8), targets (B, W, 110, 3))."""
    mfcc, rest, emotions, targets = [], [], [], []
    for _ in range(config.batch):
        u = rng.choice(len(corpus.mfcc), p=corpus.weights)
        length = len(corpus.mfcc[u])
        start = int(rng.integers(0, max(length - config.window, 0) + 1))
        window = slice(start, start + config.window)
        features, tracks = corpus.mfcc[u][window], corpus.tracks[u][window]
        pad = config.window - len(features)
        # As at run time (spacelive.motion), S2L speaks around a rest with the lips closed.
        identity = closed_mouth(perturb(bank[rng.integers(len(bank))], rng)).astype(np.float32)
        emotion = np.zeros(len(EMOTIONS), np.float32)
        if rng.random() >= config.neutral_fraction:
            emotion[rng.integers(1, len(EMOTIONS))] = rng.uniform(0.3, 1.0)
        frames = landmarks_from_tracks(tracks, identity, emotion)
        if pad:  # short utterance: silence after it
            features = np.concatenate([features, np.repeat(features[-1:], pad, axis=0)])
            frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
        mfcc.append(features)
        rest.append(identity)
        emotions.append(np.repeat(emotion[None], config.window, axis=0))
        targets.append(frames)
    return tuple(torch.from_numpy(np.stack(a)) for a in (mfcc, rest, emotions, targets))


class S2LTrainer(nn.Module):
    """Audio encoder + Speech2Landmarks, trained together."""

    def __init__(self, width: str):
        super().__init__()
        w = width_named(width)
        self.audio_encoder = AudioEncoder(w.channels)
        self.s2l = Speech2Landmarks(w)

    def forward(self, mfcc, landmarks0, emotion, teacher):
        return self.s2l(self.audio_encoder(mfcc), landmarks0, emotion, teacher=teacher)


def loss_terms(predicted: torch.Tensor, target: torch.Tensor, y_weight: float, mouth_weight: float):
    """L1 position and velocity losses of (B, T, 110, 3) sequences: y counts ``y_weight``
    times, the mouth points ``mouth_weight`` times (the mouth is 20 of 110 points but is what
    lip sync is judged on)."""
    weight = predicted.new_ones(SPARSE_POINTS, 3)
    weight[:, 1] = y_weight
    weight[MOUTH] *= mouth_weight
    position = ((predicted - target).abs() * weight).mean()
    velocity = ((predicted.diff(dim=1) - target.diff(dim=1)).abs() * weight).mean()
    return position, velocity


def train(data: Path, out: Path, config: TrainConfig, init_from: Path | None = None) -> dict:
    """Train (or resume) into ``out``; returns the final summary. ``init_from`` starts a new
    run from another run's weights (fine-tuning)."""
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    corpus = Corpus(data)
    bank = identity_bank(out / "identities.npy")
    model = S2LTrainer(config.width)
    model.audio_encoder.mfcc_mean.copy_(torch.from_numpy(corpus.mfcc_mean))
    model.audio_encoder.mfcc_std.copy_(torch.from_numpy(corpus.mfcc_std))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr_start)
    run = TrainingRun(
        out,
        config,
        model,
        optimizer,
        LOG_COLUMNS,
        "S2L",
        ("loss", "position", "velocity"),
        init_from,
    )
    model.train()
    loss = torch.zeros(())
    while not run.done:
        mfcc, rest, emotion, target = sample_batch(corpus, bank, run.rng, config)
        previous = target + config.input_noise * torch.randn_like(target)
        if run.rng.random() < config.self_feed:
            # Streaming feeds S2L its own previous output: train on that too, or it drifts.
            with torch.no_grad():
                previous = model(mfcc, rest, emotion, None)
        run.begin_step()
        predicted = model(mfcc, rest, emotion, previous)
        position, velocity = loss_terms(predicted, target, config.y_weight, config.mouth_weight)
        loss = position + config.velocity_weight * velocity
        run.finish_step(loss, {"position": position.item(), "velocity": velocity.item()})
    run.close()
    return {"steps": run.step, "corpus_hours": corpus.hours, "final_loss": float(loss.item())}


LOG_COLUMNS = ("loss", "position", "velocity", "lr")
