"""The inference engine: one per process. Owns the stage runners, the renderer and the
face analyzer, and opens sessions on them."""

import logging
from dataclasses import dataclass
from pathlib import Path

from spacelive.audio_input import AudioSpec
from spacelive.controls import ControlUpdate
from spacelive.face import Avatar
from spacelive.motion import MotionModel
from spacelive.renderer import Renderer, WarpRenderer
from spacelive.renderer_onnx import OnnxRenderer
from spacelive.runners import load_stages
from spacelive.session import StreamSession

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_MODELS = ASSETS / "models" / "realtime"
DEFAULT_PORTRAIT = ASSETS / "default_portrait.jpg"


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How to run the stages."""

    models: Path = DEFAULT_MODELS
    backend: str = "cpu"
    threads: int = 1  # ONNX Runtime intra-op threads per stage call
    renderer: str = "numpy"  # "numpy" (CPU, OpenCV) or "onnx" (its twin, on ``backend``)


class Engine:
    def __init__(self, config: EngineConfig = EngineConfig()):
        self.config = config
        self.stages = load_stages(config.models, config.backend, config.threads)
        self.motion = MotionModel(self.stages)
        self.renderer: Renderer
        if config.renderer == "numpy":
            self.renderer = WarpRenderer()
        elif config.renderer == "onnx":
            self.renderer = OnnxRenderer(backend=config.backend, threads=config.threads)
        else:
            raise ValueError(f"unknown renderer {config.renderer!r}; use 'numpy' or 'onnx'")

    def open_session(
        self,
        avatar: Avatar,
        audio: AudioSpec,
        controls: ControlUpdate | None = None,
        seed: int = 0,
        output: str = "video",
    ) -> StreamSession:
        """A new stream on ``avatar`` with ``audio`` as declared (``AudioSpec()``: 16 kHz
        PCM); ``seed`` fixes the generated motion (head pose, blinks); ``output``: "video" or
        "keypoints"."""
        return StreamSession(self.motion, self.renderer, avatar, audio, controls, seed, output)
