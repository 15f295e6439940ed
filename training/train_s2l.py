"""Training Speech2Landmarks: `spacelive train s2l --data DIR --width realtime|paper`.

The paper's recipe scaled to a CPU: Adam, warm-up from 1e-5 to 5e-4, then cosine decay to 0;
L1 on the normalized landmarks with extra weight on y, plus an L1 velocity loss. Batches are
random windows of corpus utterances; each example draws a speaker identity and an emotion (one
of the 8 MEAD emotions at a random intensity, or neutral), and the teacher turns the
utterance's articulation tracks into that speaker's landmarks.

Streaming runs S2L autoregressively on its own output, so a share ``self_feed`` of the batches
(by default all) feed the model's own free-running predictions (computed without gradient)
as the previous frames; the others feed the teacher's, with noise. Trained mostly on teacher
frames, the model leans on them: once it hears itself it lags and drifts (with a share of 0.3
its lips parted 0.03-0.06 in 3 s of silence and the inner-lip correlation on a training voice
was 0.47, against 0.0013 and 0.60 with all batches self-fed, after two thirds of the steps;
`benchmarks/results/lipsync_heldout_select-*.json`).

With ``encoder_models`` (`--encoder-from DIR`), S2L learns on the features of that model
directory's trained audio encoder, frozen: the int8 graph the server runs, stepped as a stream
once over the corpus (cached in the output folder). PoseGen hears that same encoder, so
a new S2L then ships without retraining them, and each step skips the encoder. Without it the
encoder trains jointly with S2L from MFCC.

A progress bar (on a terminal), checkpoints (resumable), a CSV log and a loss-curve PNG go to
the output folder.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spacelive.face.landmarks import EMOTIONS, MOUTH, SPARSE_POINTS, closed_mouth, inner_lip_gap
from spacelive.models.audio_encoder import AudioEncoder
from spacelive.models.speech2landmarks import Speech2Landmarks
from spacelive.models.widths import width_named
from spacelive.motion.runners import StageSet, load_stages
from spacelive.training.corpus import HELD_OUT_VOICES
from spacelive.training.encoder_features import encode_audio
from spacelive.training.identities import identity_bank, perturb
from spacelive.training.run import TrainingRun
from spacelive.training.teacher import landmarks_from_tracks

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    width: str = "realtime"
    steps: int = 4_000  # realtime width on a frozen encoder: about 0.8 s/step on this CPU
    batch: int = 20
    window: int = 150  # frames: 5 s
    lr_start: float = 1e-5
    lr_peak: float = 4e-4
    warmup: int = 300
    y_weight: float = 2.0
    mouth_weight: float = 4.0  # extra weight of the 20 mouth points (48-67) in both losses
    # Weight of the inner-lip gap's own L1 (position and velocity). The lip points' errors
    # spread a missed p, b or m over 20 points; the gap is the closure itself.
    gap_weight: float = 0.0
    # Weight of a hinge on the gap where the teacher's lips are closed (p, b, m and silence):
    # a gap left open there costs more than a small miss elsewhere.
    closure_weight: float = 0.0
    velocity_weight: float = 1.0
    input_noise: float = 0.02
    self_feed: float = 1.0  # share of batches whose previous frames are the model's own output
    neutral_fraction: float = 0.4
    checkpoint_every: int = 250
    seed: int = 0


class Corpus:
    """All utterances of a corpus folder (training voices only), as float32 arrays.

    ``audio`` is what the trained model hears per utterance: the MFCC frames (T, 40), or with
    an ``encoder`` the frozen encoder's features (T, channels)."""

    def __init__(self, folder: Path, encoder: StageSet | None = None, cache: Path | None = None):
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
        self.audio = self.mfcc if encoder is None else _encoded(encoder, self.mfcc, cache)

    @property
    def hours(self) -> float:
        return sum(len(m) for m in self.mfcc) / 30 / 3600


def _encoded(encoder: StageSet, mfccs: list[np.ndarray], cache: Path | None) -> list[np.ndarray]:
    """The frozen encoder's features per utterance, cached in ``cache`` under the encoder's
    sha256 (a cache from another encoder is recomputed)."""
    sha = encoder.manifest["stages"]["audio_encoder"]["sha256"]
    if cache is not None and cache.exists():
        with np.load(cache) as stored:
            if str(stored["encoder_sha256"]) == sha and len(stored.files) == len(mfccs) + 1:
                return [stored[f"u{i}"] for i in range(len(mfccs))]
    log.info("encoding %d utterances with the frozen audio encoder", len(mfccs))
    features = encode_audio(encoder, mfccs)
    if cache is not None:
        np.savez(cache, encoder_sha256=sha, **{f"u{i}": f for i, f in enumerate(features)})
    return features


def sample_batch(corpus: Corpus, bank: np.ndarray, rng: np.random.Generator, config: TrainConfig):
    """(audio (B, W, 40 or channels), landmarks0 (B, 110, 3), emotion (B, W, 8), targets
    (B, W, 110, 3))."""
    audio, rest, emotions, targets = [], [], [], []
    for _ in range(config.batch):
        u = rng.choice(len(corpus.audio), p=corpus.weights)
        length = len(corpus.audio[u])
        start = int(rng.integers(0, max(length - config.window, 0) + 1))
        window = slice(start, start + config.window)
        features, tracks = corpus.audio[u][window], corpus.tracks[u][window]
        pad = config.window - len(features)
        # S2L speaks around the rest with its lips closed, as at run time (spacelive.motion.loop).
        identity = closed_mouth(perturb(bank[rng.integers(len(bank))], rng)).astype(np.float32)
        emotion = np.zeros(len(EMOTIONS), np.float32)
        if rng.random() >= config.neutral_fraction:
            emotion[rng.integers(1, len(EMOTIONS))] = rng.uniform(0.3, 1.0)
        frames = landmarks_from_tracks(tracks, identity, emotion)
        if pad:  # short utterance: silence after it
            features = np.concatenate([features, np.repeat(features[-1:], pad, axis=0)])
            frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
        audio.append(features)
        rest.append(identity)
        emotions.append(np.repeat(emotion[None], config.window, axis=0))
        targets.append(frames)
    return tuple(torch.from_numpy(np.stack(a)) for a in (audio, rest, emotions, targets))


class S2LTrainer(nn.Module):
    """Audio encoder + Speech2Landmarks, trained together; or S2L alone (``joint=False``) on a
    frozen encoder's features."""

    def __init__(self, width: str, joint: bool = True):
        super().__init__()
        w = width_named(width)
        self.audio_encoder = AudioEncoder(w.channels) if joint else None
        self.s2l = Speech2Landmarks(w)

    def forward(self, audio, landmarks0, emotion, teacher):
        """audio: MFCC (B, T, 40) when joint, else encoder features (B, T, channels)."""
        if self.audio_encoder is not None:
            audio = self.audio_encoder(audio)
        return self.s2l(audio, landmarks0, emotion, teacher=teacher)


CLOSED_GAP = 0.01
"""A teacher gap (normalized units) below this is closed lips."""


def loss_terms(
    predicted: torch.Tensor,
    target: torch.Tensor,
    y_weight: float,
    mouth_weight: float,
    gap_weight: float = 0.0,
    closure_weight: float = 0.0,
):
    """L1 position and velocity losses of (B, T, 110, 3) sequences: y counts ``y_weight``
    times, the mouth points ``mouth_weight`` times (the mouth is 20 of 110 points but is what
    lip sync is judged on), and the inner-lip gap adds its own L1 times ``gap_weight``; where
    the teacher's lips are closed (gap under CLOSED_GAP), a gap left open adds its hinge times
    ``closure_weight``."""
    weight = predicted.new_ones(SPARSE_POINTS, 3)
    weight[:, 1] = y_weight
    weight[MOUTH] *= mouth_weight
    position = ((predicted - target).abs() * weight).mean()
    velocity = ((predicted.diff(dim=1) - target.diff(dim=1)).abs() * weight).mean()
    if gap_weight:
        gap_p, gap_t = inner_lip_gap(predicted), inner_lip_gap(target)  # (B, T)
        position = position + gap_weight * (gap_p - gap_t).abs().mean()
        velocity = velocity + gap_weight * (gap_p.diff(dim=1) - gap_t.diff(dim=1)).abs().mean()
    if closure_weight:
        gap_p, gap_t = inner_lip_gap(predicted), inner_lip_gap(target)
        closed = (gap_t < CLOSED_GAP).float()
        position = position + closure_weight * ((gap_p - gap_t).clamp(min=0) * closed).mean()
    return position, velocity


def train(
    data: Path,
    out: Path,
    config: TrainConfig,
    init_from: Path | None = None,
    encoder_models: Path | None = None,
) -> dict:
    """Train (or resume) into ``out``; returns the final summary. ``init_from`` starts a new
    run from another run's weights (fine-tuning); ``encoder_models`` is a model directory whose
    audio encoder S2L hears, frozen."""
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    encoder = None if encoder_models is None else load_stages(encoder_models, threads=2)
    if encoder is not None and encoder.manifest["width"] != config.width:
        raise ValueError(
            f"{encoder_models} holds a {encoder.manifest['width']}-width encoder; "
            f"S2L {config.width} cannot hear it"
        )
    if init_from is not None and init_from.is_dir():
        init_from = _checkpoint_from_models(init_from, out, config.width, encoder)
    corpus = Corpus(data, encoder, out / "features.npz")
    bank = identity_bank(out / "identities.npy")
    model = S2LTrainer(config.width, joint=encoder is None)
    if model.audio_encoder is not None:
        model.audio_encoder.mfcc_mean.copy_(torch.from_numpy(corpus.mfcc_mean))
        model.audio_encoder.mfcc_std.copy_(torch.from_numpy(corpus.mfcc_std))
    if encoder is not None:  # the checkpoint names the encoder it was trained on; export checks
        (out / "encoder.json").write_text(
            json.dumps({"models": str(encoder_models), **_encoder_identity(encoder)}, indent=2)
            + "\n"
        )
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
        audio, rest, emotion, target = sample_batch(corpus, bank, run.rng, config)
        previous = target + config.input_noise * torch.randn_like(target)
        if run.rng.random() < config.self_feed:
            # Streaming feeds S2L its own previous output: train on that too, or it drifts.
            with torch.no_grad():
                previous = model(audio, rest, emotion, None)
        run.begin_step()
        predicted = model(audio, rest, emotion, previous)
        position, velocity = loss_terms(
            predicted,
            target,
            config.y_weight,
            config.mouth_weight,
            config.gap_weight,
            config.closure_weight,
        )
        loss = position + config.velocity_weight * velocity
        run.finish_step(loss, {"position": position.item(), "velocity": velocity.item()})
    run.close()
    return {"steps": run.step, "corpus_hours": corpus.hours, "final_loss": float(loss.item())}


LOG_COLUMNS = ("loss", "position", "velocity", "lr")


def _checkpoint_from_models(
    model_dir: Path, out: Path, width: str, encoder: StageSet | None
) -> Path:
    """``model_dir``'s shipped S2L as a checkpoint to start from (``export.recover``): where
    the run that trained it is not at hand. It must be a run on the same frozen encoder."""
    from spacelive.export.recover import recover_stages

    manifest = json.loads((model_dir / "manifest.json").read_text())
    if manifest["width"] != width:
        raise ValueError(f"{model_dir} holds a {manifest['width']}-width S2L, not {width}")
    if encoder is None:
        raise ValueError(
            f"{model_dir}'s S2L hears its audio encoder, which is not recovered: train it on "
            "that encoder, frozen (--encoder-from)"
        )
    theirs = manifest["stages"]["audio_encoder"]["sha256"]
    if theirs != _encoder_identity(encoder)["sha256"]:
        raise ValueError(f"{model_dir}'s S2L was trained on another audio encoder than the given")
    stages = recover_stages(model_dir, ("s2l",))
    path = out / "init-from-models.pt"
    weights = {f"s2l.{k}": v for k, v in stages.s2l.state_dict().items()}
    torch.save({"model": weights, "models": str(model_dir)}, path)
    log.info("recovered the S2L of %s into %s", model_dir, path)
    return path


def _encoder_identity(stages: StageSet) -> dict:
    entry = stages.manifest["stages"]["audio_encoder"]
    return {"file": entry["file"], "sha256": entry["sha256"]}
