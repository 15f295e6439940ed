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

import csv
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from spacelive.landmarks import EMOTIONS, MOUTH, SPARSE_POINTS, closed_mouth
from spacelive.models.audio_encoder import AudioEncoder
from spacelive.models.speech2landmarks import Speech2Landmarks
from spacelive.models.widths import width_named
from spacelive.training.corpus import HELD_OUT_VOICES
from spacelive.training.identities import identity_bank, perturb
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


class Schedule(Protocol):
    """What the learning-rate schedule reads from a training config."""

    steps: int
    warmup: int
    lr_start: float
    lr_peak: float


def learning_rate(step: int, config: Schedule) -> float:
    warmup = min(config.warmup, config.steps // 10)  # short runs warm up for a tenth
    if step < warmup:
        return config.lr_start + (config.lr_peak - config.lr_start) * step / warmup
    progress = (step - warmup) / max(config.steps - warmup, 1)
    return config.lr_peak * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


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
    checkpoint = out / "checkpoint.pt"
    step, rng_state = 0, None
    if init_from is not None and not checkpoint.exists():
        model.load_state_dict(torch.load(init_from, weights_only=False)["model"])
        log.info("starting from the weights of %s", init_from)
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, rng_state = state["step"], state["rng"]
        log.info("resumed at step %d", step)
    rng = np.random.default_rng(config.seed)
    if rng_state is not None:
        rng.bit_generator.state = rng_state
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    log_path = out / "log.csv"
    kept = log_rows_up_to(log_path, step)  # rows past the checkpoint are redone
    log_file = log_path.open("w", newline="")
    writer = csv.writer(log_file)
    writer.writerow(LOG_COLUMNS)
    writer.writerows(kept)
    t0, start_step = time.perf_counter(), step
    model.train()
    bar = tqdm(total=config.steps, initial=step, unit="step", desc="S2L", disable=None)
    while step < config.steps:
        mfcc, rest, emotion, target = sample_batch(corpus, bank, rng, config)
        previous = target + config.input_noise * torch.randn_like(target)
        if rng.random() < config.self_feed:
            # Streaming feeds S2L its own previous output: train on that too, or it drifts.
            with torch.no_grad():
                previous = model(mfcc, rest, emotion, None)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        predicted = model(mfcc, rest, emotion, previous)
        position, velocity = loss_terms(predicted, target, config.y_weight, config.mouth_weight)
        loss = position + config.velocity_weight * velocity
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{learning_rate(step, config):.1e}")
        writer.writerow(
            [
                step,
                f"{loss.item():.6f}",
                f"{position.item():.6f}",
                f"{velocity.item():.6f}",
                f"{learning_rate(step, config):.3e}",
                f"{time.perf_counter() - t0:.1f}",
            ]
        )
        if step % 50 == 0:
            log_file.flush()
            log.info(
                "step %d/%d loss %.4f (position %.4f, velocity %.4f) %.2f s/step",
                step,
                config.steps,
                loss.item(),
                position.item(),
                velocity.item(),
                (time.perf_counter() - t0) / max(step - start_step, 1),
            )
        if step % config.checkpoint_every == 0 or step == config.steps:
            log_file.flush()
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "step": step,
                    "rng": rng.bit_generator.state,
                    "config": asdict(config),
                },
                checkpoint,
            )
            plot_losses(log_path, out / "loss.png")
    bar.close()
    log_file.close()
    return {"steps": step, "corpus_hours": corpus.hours, "final_loss": float(loss.item())}


LOG_COLUMNS = ["step", "loss", "position", "velocity", "lr", "seconds"]


def log_rows_up_to(log_path: Path, step: int) -> list[list[str]]:
    """The CSV log's rows for steps 1..step (a resumed run redoes the steps after its
    checkpoint, so their rows are dropped rather than duplicated)."""
    if step == 0 or not log_path.exists():
        return []
    rows = list(csv.reader(log_path.open()))[1:]
    return [r for r in rows if r and int(r[0]) <= step]


def plot_losses(
    log_path: Path,
    png: Path,
    title: str = "Speech2Landmarks training",
    keys: tuple[str, ...] = ("loss", "position", "velocity"),
) -> None:
    """The log's ``keys`` columns against step (50-step moving averages, log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(log_path.open()))
    if not rows:
        return
    steps = np.array([int(r["step"]) for r in rows])
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in keys:
        values = np.array([float(r[key]) for r in rows])
        kernel = np.ones(min(50, len(values))) / min(50, len(values))
        ax.plot(
            steps[: len(values) - len(kernel) + 1], np.convolve(values, kernel, "valid"), label=key
        )
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(f"{title} (50-step moving average)")
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
