"""Per-stage timing of the frame pipeline."""

import threading
from collections import defaultdict


class StageTimes:
    """Accumulated seconds and call counts per pipeline stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.frames = 0
        self._lock = threading.Lock()  # a session's stages may run on different threads

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] += seconds

    def per_frame_ms(self) -> dict[str, float]:
        n = max(self.frames, 1)
        return {stage: 1000 * s / n for stage, s in self.seconds.items()}
