"""Per-stage timing of the frame pipeline."""

from collections import defaultdict


class StageTimes:
    """Accumulated seconds and call counts per pipeline stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.frames = 0

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] += seconds

    def per_frame_ms(self) -> dict[str, float]:
        n = max(self.frames, 1)
        return {stage: 1000 * s / n for stage, s in self.seconds.items()}
