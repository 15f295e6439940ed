"""Train the closure head: `spacelive train closure --data CORPUS --models DIR`.

Per frame, the probability that the lips are sealed, from the audio encoder's features (the
bundled encoder, frozen, stepped as a stream steps it). Labels come from the synthetic
corpus's exact phone timing: a frame whose centre lies in an m, or in the closure of a p or b
(all but its last RELEASE_SHARE, the burst), is sealed. Training voices only; the last
``validation`` utterances of the corpus are held back to report per-phone figures. The head
is written into the model directory as ``closure.onnx`` with its manifest entry, and the
motion loop applies it (``spacelive.motion.closure``).
"""

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spacelive.motion.runners import load_stages
from spacelive.training.alignment import Phone
from spacelive.training.train_posegen import load_corpus

log = logging.getLogger(__name__)

SEALED_PHONES = frozenset({"P", "B", "M"})
RELEASE_SHARE = 0.2
CLOSURE_FILE = "closure.onnx"
_GROUPS = {
    "bilabial": SEALED_PHONES,
    "labiodental": {"F", "V"},
    "alveolar": {"T", "D", "N", "S", "Z", "L"},
    "open_vowel": {"AA", "AE", "AH", "AO", "AW", "AY"},
    "other_vowel": {"EH", "IH", "IY", "EY", "OW", "UW", "UH", "ER", "AX", "OY"},
}


@dataclass
class ClosureTrainConfig:
    steps: int = 10_000
    batch: int = 512
    hidden: int = 128
    lr: float = 1e-3
    validation: int = 60  # utterances held back, from the corpus's end
    seed: int = 0
    # Training voices the head never hears (engine:name): choosing between heads on them
    # measures unseen voices without touching the held-out ones.
    exclude_voices: tuple[str, ...] = ()


class ClosureHead(nn.Module):
    """audio (B, C) encoder features -> sealed (B,) probability."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def logits(self, audio: torch.Tensor) -> torch.Tensor:
        return self.net(audio)[:, 0]

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(audio))


def sealed_frames(phones: list[Phone], frames: int) -> np.ndarray:
    """(T,) float32: 1 where the frame's centre is in an m or in a p's or b's closure."""
    centres = (np.arange(frames) + 0.5) / 30.0
    sealed = np.zeros(frames, np.float32)
    for p in phones:
        if p.phoneme in SEALED_PHONES:
            hold = 1.0 if p.phoneme == "M" else 1.0 - RELEASE_SHARE
            end = p.start_s + hold * (p.end_s - p.start_s)
            sealed[(centres >= p.start_s) & (centres < end)] = 1.0
    return sealed


def phone_figures(head: ClosureHead, features, phones, threshold: float = 0.5) -> dict:
    """Per phone group: the share of phones where the head fires (probability above
    ``threshold``) on any frame (bilabials: the lips meet) and on the centre frame (the
    others: a closure where none belongs)."""
    fired: dict[str, list[bool]] = {f"{g}_any": [] for g in _GROUPS}
    fired.update({f"{g}_centre": [] for g in _GROUPS})
    for f, utterance_phones in zip(features, phones, strict=True):
        with torch.no_grad():
            p = head(torch.from_numpy(f)).numpy()
        for ph in utterance_phones:
            a = max(int(np.floor(ph.start_s * 30)), 0)
            b = min(int(np.ceil(ph.end_s * 30)), len(p))
            if b <= a:
                continue
            centre = min(int((ph.start_s + ph.end_s) / 2 * 30), len(p) - 1)
            for group, members in _GROUPS.items():
                if ph.phoneme in members:
                    fired[f"{group}_any"].append(bool(p[a:b].max() > threshold))
                    fired[f"{group}_centre"].append(bool(p[centre] > threshold))
    return {k: float(np.mean(v)) for k, v in fired.items() if v}


def train(corpus_folder: Path, models: Path, config: ClosureTrainConfig) -> dict:
    """Train on ``corpus_folder`` with ``models``' audio encoder; write the head there."""
    started = time.perf_counter()
    stages = load_stages(models)
    corpus = [u for u in load_corpus(corpus_folder, stages) if u.voice not in config.exclude_voices]
    if len(corpus) <= config.validation:
        raise ValueError(f"{corpus_folder}: {len(corpus)} utterances, need > {config.validation}")
    fit, held = corpus[: -config.validation], corpus[-config.validation :]
    x = torch.from_numpy(np.concatenate([u.features for u in fit]))
    y = torch.from_numpy(np.concatenate([sealed_frames(u.phones, len(u.features)) for u in fit]))
    torch.manual_seed(config.seed)
    head = ClosureHead(x.shape[1], config.hidden)
    optimizer = torch.optim.Adam(head.parameters(), config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps)
    # Sealed frames are about 5 % of speech: weighted up by the square root of the imbalance.
    weight = torch.sqrt((1 - y.mean()) / y.mean().clamp(min=1e-6))
    generator = torch.Generator().manual_seed(config.seed)
    for step in range(config.steps):
        rows = torch.randint(len(y), (config.batch,), generator=generator)
        loss = nn.functional.binary_cross_entropy_with_logits(
            head.logits(x[rows]), y[rows], pos_weight=weight
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 2000 == 0:
            log.info("closure step %d loss %.4f", step, float(loss))
    head.eval()
    validation = phone_figures(head, [u.features for u in held], [u.phones for u in held])
    summary = {
        "trained": True,
        "steps": config.steps,
        "config": asdict(config),
        "data": {
            "corpus": str(corpus_folder),
            "utterances": len(fit),
            "voices_excluded": list(config.exclude_voices),
            "frames": int(len(y)),
            "sealed_share": float(y.mean()),
        },
        "validation": {"utterances": len(held), "fired_at_0.5": validation},
        "training_time_s": round(time.perf_counter() - started, 1),
    }
    export_head(head, int(x.shape[1]), Path(models), summary)
    return summary


def export_head(head: ClosureHead, channels: int, models: Path, training: dict) -> Path:
    """Write ``closure.onnx`` and its manifest entry into the model directory."""
    path = models / CLOSURE_FILE
    torch.onnx.export(
        head,
        (torch.zeros(1, channels),),
        str(path),
        input_names=["audio"],
        output_names=["sealed"],
        dynamic_axes={"audio": {0: "batch"}, "sealed": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    manifest_path = models / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["stages"]["closure"] = {
        "file": CLOSURE_FILE,
        "inputs": [{"name": "audio", "shape": ["batch", channels], "dtype": "float32"}],
        "outputs": [{"name": "sealed", "shape": ["batch"], "dtype": "float32"}],
        "training": training,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path
