"""The renderer's ONNX twin behind the CPU renderer's interface, for GPU hosts.

``WarpRenderer`` (numpy/OpenCV) is the renderer on CPU hosts: it only touches the pixels that
move and costs a few milliseconds on one core. On a GPU host the per-pixel work runs as one
ONNX graph (``export/renderer_graph.py``, shipped as ``assets/renderer.onnx``) through ONNX
Runtime's CUDA or TensorRT providers; the CPU still computes the small per-frame inputs
(``WarpRenderer.frame_inputs``). Both give the same frames up to rounding (a test holds them
together).
"""

from pathlib import Path

import numpy as np

from spacelive import ASSETS
from spacelive.motion.runners import StageRunner
from spacelive.render.renderer import RenderSource, WarpRenderer, frame_buffer, moving_keypoints

RENDERER_GRAPH = ASSETS / "renderer.onnx"


class OnnxRenderer:
    """Same interface as ``WarpRenderer``: ``prepare`` once per avatar, ``render`` per frame."""

    def __init__(self, path: Path = RENDERER_GRAPH, backend: str = "cpu", threads: int = 1):
        self._cpu = WarpRenderer()
        self._graph = StageRunner(Path(path), backend, threads)

    def prepare(self, image: np.ndarray, kp_source_px: np.ndarray) -> RenderSource:
        return self._cpu.prepare(image, kp_source_px)

    def render(
        self, source: RenderSource, kp_driving_px: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:
        """kp_driving_px: (478, >=2) pixels -> (512, 512, 3) uint8 frame (into ``out`` if
        given, as ``WarpRenderer.render``; the graph's output is copied there)."""
        out = frame_buffer(source, out)
        driving = moving_keypoints(source, kp_driving_px)
        if driving is None:
            np.copyto(out, source.image)
            return out
        inputs = self._cpu.frame_inputs(source, driving)
        inputs["image"], inputs["clean"] = source.image[None], source.clean[None]
        np.copyto(out, self._graph.run(inputs)["frame"][0])
        return out
