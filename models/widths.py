"""Stage widths: one architecture definition, several sizes."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Width:
    """Hidden sizes of the stages.

    channels: audio-encoder conv channels and landmark/keypoint MLP hidden units.
    lstm: S2L LSTM hidden units.
    pose_lstm: PoseGen encoder/decoder LSTM hidden units.
    pose_latent: PoseGen latent z size.
    """

    name: str
    channels: int
    lstm: int
    pose_lstm: int
    pose_latent: int = 64


WIDTHS: dict[str, Width] = {
    # Appendix A: 1024-wide convs, MLPs and LSTMs; PoseGen 256 with z = 64.
    "paper": Width("paper", channels=1024, lstm=1024, pose_lstm=256),
    "realtime": Width("realtime", channels=256, lstm=256, pose_lstm=128),
    # For tests only: same graph, fast to export and run.
    "tiny": Width("tiny", channels=32, lstm=32, pose_lstm=16, pose_latent=8),
}


def width_named(name: str) -> Width:
    try:
        return WIDTHS[name]
    except KeyError:
        raise ValueError(f"unknown width {name!r}; choose one of {sorted(WIDTHS)}") from None
