"""Training PoseGen: `spacelive train posegen --data DIR --models DIR`.

PoseGen (appendix A.2) is a conditional VAE over head-pose sequences given audio. It hears the
shared audio encoder's features: the encoder is the trained one of the model directory (the
bundled one by default), run through its ONNX step graph exactly as a stream runs it, and
frozen. Its targets come from the head-motion teacher (`head_motion.py`), which draws a new
random style for every example, so that one audio is paired with many motions and the latent
learns the style.

The decoder streams from the zero pose on its own previous output. Training runs it with the
previous poses given, all frames at once: in half the batches those are its own free-running
output (run without gradients), in the others the teacher's with noise.
Loss: L1 on the pose (angles in degrees, translation in 1/200 crop units, so that both are
about 1 in size) plus an L1 velocity loss, plus beta times the KL divergence of the posterior
from N(0, 1), annealed in, with free bits; at inference z ~ N(0, 1). Adam, warm-up then
cosine decay.

A progress bar (on a terminal), checkpoints (resumable), a CSV log and a loss-curve PNG go to
the output folder, as for S2L.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spacelive.models.posegen import PoseGen
from spacelive.models.widths import width_named
from spacelive.motion.runners import StageSet
from spacelive.training.alignment import Phone
from spacelive.training.corpus import HELD_OUT_VOICES
from spacelive.training.encoder_features import encode_audio
from spacelive.training.head_motion import head_motion
from spacelive.training.run import TrainingRun

log = logging.getLogger(__name__)

POSE_UNITS = np.array([np.degrees(1.0)] * 3 + [200.0] * 3, np.float32)
"""Loss units per pose dimension: degrees for the angles, 1/200 crop units for translation."""


@dataclass
class PoseTrainConfig:
    width: str = "realtime"
    steps: int = 1_600
    batch: int = 24
    window: int = 300  # frames: 10 s, from a stream's start (the zero pose)
    lr_start: float = 1e-5
    lr_peak: float = 1e-3
    warmup: int = 100
    velocity_weight: float = 4.0
    # Per example, against an L1 averaged over 300 x 6 values: the ELBO's own weight of 1.
    # At 0.005-0.02 the latent collapsed and prior samples gave a near-still head.
    kl_weight: float = 1 / 1800
    kl_anneal: int = 300  # steps over which the KL weight ramps up from 0
    free_nats: float = 0.0  # per latent dimension, not penalized
    self_feed: float = 0.5  # share of batches whose previous poses are the model's own
    input_noise: float = 0.3  # noise on the teacher's previous poses, in POSE_UNITS
    # Weight of the prior-sample statistics loss: the batch's free-running decodes from
    # z ~ N(0, 1) against the teacher's per-example mean, spread and speed. Without it the
    # decoder regressed to the mean and prior samples moved at under half the teacher's spread.
    prior_weight: float = 0.0
    checkpoint_every: int = 100
    seed: int = 0


@dataclass
class PoseUtterance:
    features: np.ndarray  # (T, C) float32, the audio encoder's output per frame
    audio: np.ndarray  # (samples,) float32, 16 kHz
    phones: list[Phone]
    voice: str = ""  # engine:name


def load_corpus(folder: Path, stages: StageSet, cache: Path | None = None) -> list[PoseUtterance]:
    """Every utterance of a corpus folder (training voices only) with its encoder features;
    the features are cached in ``cache`` (an .npz) when given."""
    mfccs, audios, phone_lists, voices = [], [], [], []
    shards = sorted(Path(folder).glob("shard-*.npz"))
    if not shards:
        raise ValueError(f"no shards in {folder}; run `spacelive data synth` first")
    for shard in shards:
        with np.load(shard) as stored:  # each access of an npz member decompresses it again
            data = {name: stored[name] for name in stored.files}
        frames, samples, phones = (
            data["frame_offsets"],
            data["sample_offsets"],
            data["phone_offsets"],
        )
        for i, voice in enumerate(data["voices"]):
            if str(voice) in HELD_OUT_VOICES:
                raise ValueError(f"{shard} holds held-out voice {voice}; refusing to train")
            voices.append(str(voice))
            mfccs.append(data["mfcc"][frames[i] : frames[i + 1]].astype(np.float32))
            audios.append(data["audio"][samples[i] : samples[i + 1]].astype(np.float32) / 32767)
            span = slice(phones[i], phones[i + 1])
            phone_lists.append(
                [
                    Phone(str(p), float(s), float(e))
                    for p, s, e in zip(
                        data["phonemes"][span],
                        data["phone_starts"][span],
                        data["phone_ends"][span],
                        strict=True,
                    )
                ]
            )
    if cache is not None and cache.exists():
        stored = np.load(cache)
        features = [stored[f"u{i}"] for i in range(len(mfccs))]
    else:
        log.info("encoding %d utterances with the audio encoder", len(mfccs))
        features = encode_audio(stages, mfccs)
        if cache is not None:
            np.savez(cache, **{f"u{i}": f for i, f in enumerate(features)})
    return [
        PoseUtterance(f, a, p, v)
        for f, a, p, v in zip(features, audios, phone_lists, voices, strict=True)
    ]


def sample_batch(
    corpus: list[PoseUtterance], rng: np.random.Generator, config: PoseTrainConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (B, W, C), teacher pose (B, W, 6)): utterances joined end to end from a
    stream's start, each example with its own random head style."""
    features, poses = [], []
    for _ in range(config.batch):
        parts, phones, audio, frames = [], [], [], 0
        while frames < config.window:
            u = corpus[rng.integers(len(corpus))]
            offset = frames / 30.0
            phones += [Phone(p.phoneme, p.start_s + offset, p.end_s + offset) for p in u.phones]
            # Frame k of the join is audio time k / 30 s: pad each utterance's audio to match.
            audio.append(np.resize(u.audio, round(len(u.features) * 16_000 / 30)))
            parts.append(u.features)
            frames += len(u.features)
        joined = np.concatenate(parts)[: config.window]
        pose = head_motion(phones, np.concatenate(audio), frames, rng)[: config.window]
        features.append(joined)
        poses.append(pose)
    return torch.from_numpy(np.stack(features)), torch.from_numpy(np.stack(poses))


def loss_terms(
    predicted: torch.Tensor,
    target: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    free_nats: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(position L1, velocity L1, KL per example, KL to minimize) in POSE_UNITS. The KL to
    minimize spares each latent dimension its first ``free_nats`` ("free bits"), so that the
    decoder, which also sees its previous poses, is not pushed to ignore z."""
    units = torch.from_numpy(POSE_UNITS)
    error = (predicted - target) * units
    position = error.abs().mean()
    velocity = (error[:, 1:] - error[:, :-1]).abs().mean()
    per_dim = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).mean(dim=0)
    return position, velocity, per_dim.sum(), per_dim.clamp(min=free_nats).sum()


def motion_statistics(pose: torch.Tensor) -> torch.Tensor:
    """pose (B, T, 6) -> (B, 3, 6) per example: mean, standard deviation and mean absolute
    frame-to-frame step of each dimension, in POSE_UNITS."""
    scaled = pose * torch.from_numpy(POSE_UNITS)
    step = (scaled[:, 1:] - scaled[:, :-1]).abs().mean(dim=1)
    return torch.stack([scaled.mean(dim=1), scaled.std(dim=1), step], dim=1)


def prior_loss(sampled: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """How far the distribution of prior samples' statistics is from the teacher's: per
    statistic and dimension, the L1 between the two batches' sorted values (the 1-D
    Wasserstein distance), so that samples match the spread of styles, not one example each.
    Steps weigh 30x (they are per frame)."""
    a = motion_statistics(sampled).sort(dim=0).values
    b = motion_statistics(target).sort(dim=0).values
    weights = torch.tensor([1.0, 1.0, 30.0])[None, :, None]
    return ((a - b).abs() * weights).mean()


def train(
    data: Path,
    stages: StageSet,
    out: Path,
    config: PoseTrainConfig,
    init_from: Path | None = None,
) -> dict:
    """Train (or resume) into ``out``; returns the final summary. ``init_from`` starts a new
    run from another run's weights (fine-tuning)."""
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    corpus = load_corpus(data, stages, out / "features.npz")
    model = PoseGen(width_named(config.width))
    channels = corpus[0].features.shape[1]
    if model.audio_proj.in_features != channels:
        raise ValueError(
            f"the audio encoder gives {channels} channels; PoseGen {config.width} expects "
            f"{model.audio_proj.in_features}: train with the encoder's width"
        )
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr_start)
    run = TrainingRun(
        out, config, model, optimizer, LOG_COLUMNS, "PoseGen", ("loss", "position", "kl"), init_from
    )
    model.train()
    loss = torch.zeros(())
    while not run.done:
        features, target = sample_batch(corpus, run.rng, config)
        run.begin_step()
        z, mu, logvar = model.posterior(features, target)
        if run.rng.random() < config.self_feed:
            # Streaming feeds the decoder its own previous pose: train on that too.
            with torch.no_grad():
                fed = model.decode(features, z)
        else:
            noise = config.input_noise * torch.randn_like(target)
            fed = target + noise / torch.from_numpy(POSE_UNITS)
        previous = torch.cat([torch.zeros_like(fed[:, :1]), fed[:, :-1]], dim=1)
        predicted = model.decode_given(features, z, previous)
        position, velocity, kl, kl_spared = loss_terms(
            predicted, target, mu, logvar, config.free_nats
        )
        beta = config.kl_weight * min(1.0, run.step / max(config.kl_anneal, 1))
        loss = position + config.velocity_weight * velocity + beta * kl_spared
        prior = torch.zeros(())
        if config.prior_weight > 0:
            # What a stream does: z ~ N(0, 1), decoded on its own output.
            sampled = model.decode(features, torch.randn_like(z))
            prior = prior_loss(sampled, target)
            loss = loss + config.prior_weight * prior
        run.finish_step(
            loss,
            {
                "position": position.item(),
                "velocity": velocity.item(),
                "kl": kl.item(),
                "prior": prior.item(),
            },
        )
    run.close()
    hours = sum(len(u.features) for u in corpus) / 30 / 3600
    return {"steps": run.step, "corpus_hours": hours, "final_loss": float(loss.item())}


LOG_COLUMNS = ("loss", "position", "velocity", "kl", "prior", "lr")
