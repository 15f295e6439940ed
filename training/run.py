"""What every trainer shares: the learning-rate schedule (warm-up, then cosine decay) and the run
folder: checkpoints and resume, config.json, a CSV log, a loss-curve PNG, a progress bar (on a
terminal) and a log line every 50 steps."""

import csv
import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

log = logging.getLogger(__name__)

LOG_EVERY = 50


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


class TrainingRun:
    """Resumes from ``out/checkpoint.pt`` if there is one (model, optimizer, step and the data
    generator ``rng``); ``record`` after each step logs and checkpoints."""

    def __init__(
        self,
        out: Path,
        config,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        columns: tuple[str, ...],
        title: str,
        plotted: tuple[str, ...],
        init_from: Path | None = None,
    ):
        """config: a dataclass with ``seed``, ``steps`` and ``checkpoint_every``; columns: the
        log's value columns (after ``step``, before ``seconds``); plotted: those in loss.png;
        init_from: a checkpoint whose weights a new run starts from (fine-tuning)."""
        out.mkdir(parents=True, exist_ok=True)
        self.out, self.config, self.model, self.optimizer = out, config, model, optimizer
        self.columns, self.title, self.plotted = columns, title, plotted
        self.checkpoint = out / "checkpoint.pt"
        self.step = 0
        self.rng = np.random.default_rng(config.seed)
        self.resumed = self.checkpoint.exists()
        if self.resumed:
            state = torch.load(self.checkpoint, weights_only=False)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            self.step = state["step"]
            self.rng.bit_generator.state = state["rng"]
            log.info("resumed at step %d", self.step)
        elif init_from is not None:
            if init_from.is_dir():
                raise ValueError(f"--init-from {init_from}: a directory, not a checkpoint")
            model.load_state_dict(torch.load(init_from, weights_only=False)["model"])
            log.info("starting from the weights of %s", init_from)
        (out / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
        self.log_path = out / "log.csv"
        kept = log_rows_up_to(self.log_path, self.step)  # rows past the checkpoint are redone
        self._log_file = self.log_path.open("w", newline="")
        self._writer = csv.writer(self._log_file)
        self._writer.writerow(["step", *columns, "seconds"])
        self._writer.writerows(kept)
        self._t0, self._start_step = time.perf_counter(), self.step
        self._bar = tqdm(
            total=config.steps, initial=self.step, unit="step", desc=title, disable=None
        )

    @property
    def done(self) -> bool:
        return self.step >= self.config.steps

    def begin_step(self) -> None:
        """Set this step's learning rate (``learning_rate`` of the config)."""
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.step, self.config)

    def finish_step(self, loss: torch.Tensor, values: dict[str, float]) -> None:
        """Backpropagate ``loss`` (gradients clipped to norm 1), step the optimizer, and
        record the step with ``values`` plus its loss and learning rate."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        lr = self.optimizer.param_groups[0]["lr"]
        self.record({**values, "loss": loss.item(), "lr": lr})

    def record(self, values: dict[str, float]) -> None:
        """One step done: its ``columns`` values into the log; checkpoint when due."""
        self.step += 1
        elapsed = time.perf_counter() - self._t0
        self._bar.update(1)
        self._bar.set_postfix(loss=f"{values['loss']:.4f}")
        self._writer.writerow(
            [self.step, *(f"{values[c]:.6g}" for c in self.columns), f"{elapsed:.1f}"]
        )
        if self.step % LOG_EVERY == 0:
            self._log_file.flush()
            log.info(
                "step %d/%d %s, %.2f s/step",
                self.step,
                self.config.steps,
                ", ".join(f"{c} {values[c]:.4g}" for c in self.columns),
                elapsed / max(self.step - self._start_step, 1),
            )
        if self.step % self.config.checkpoint_every == 0 or self.done:
            self._log_file.flush()
            torch.save(
                {
                    "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "step": self.step,
                    "rng": self.rng.bit_generator.state,
                    "config": asdict(self.config),
                },
                self.checkpoint,
            )
            plot_losses(self.log_path, self.out / "loss.png", self.title, self.plotted)

    def close(self) -> None:
        self._bar.close()
        self._log_file.close()


def log_rows_up_to(log_path: Path, step: int) -> list[list[str]]:
    """The CSV log's rows for steps 1..step (a resumed run redoes the steps after its
    checkpoint, so their rows are dropped rather than duplicated)."""
    if step == 0 or not log_path.exists():
        return []
    rows = list(csv.reader(log_path.open()))[1:]
    return [r for r in rows if r and int(r[0]) <= step]


def plot_losses(log_path: Path, png: Path, title: str, keys: tuple[str, ...]) -> None:
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
