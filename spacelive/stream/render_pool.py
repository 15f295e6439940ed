"""Rendering and encoding in worker processes, one session per worker.

The warp renderer is mostly small numpy and OpenCV calls that hold the GIL: two render
threads in one process ran at 0.9-1.1x the speed of one. So each core gets a process. A
session is placed on the least-loaded worker when it opens and stays there, its render
source and output sink (``spacelive.stream.sinks``: H.264, or the raw picture) living in that
process; each frame crosses as its driving keypoints ((478, 3) float32 pixels, 6 KB) one way
and its access unit (a few KB; a raw picture, 768 KB) the other. A worker
handles its messages in order, so a session's frames come back in order.

Rendering in the worker is the same code on the same inputs as in the session's own process,
so frames are byte-identical (tests/test_batch.py). A frame that fails fails its session only;
a worker that dies fails the sessions on it, and a fresh worker takes its place.

Workers are spawned (forking a process that runs ONNX Runtime and engine threads is unsafe),
so a script that builds a ``BatchEngine`` needs the usual ``if __name__ == "__main__":`` guard.
"""

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

import numpy as np

from spacelive import FRAME_SIZE
from spacelive.media.video import EncodedFrame

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RendererSpec:
    """How a worker builds its renderer (``EngineConfig``'s fields)."""

    kind: str = "numpy"  # "numpy" or "onnx"
    backend: str = "cpu"
    threads: int = 1


@dataclass(slots=True)
class RenderedFrame:
    session: int
    frame: EncodedFrame | None
    render_seconds: float = 0.0
    encode_seconds: float = 0.0
    error: str | None = None  # the frame failed: the session should end


def _make_renderer(spec: RendererSpec):
    if spec.kind == "onnx":
        from spacelive.render.renderer_onnx import OnnxRenderer

        return OnnxRenderer(backend=spec.backend, threads=spec.threads)
    from spacelive.render.renderer import WarpRenderer

    return WarpRenderer()


def _serve(conn: Connection, spec: RendererSpec) -> None:
    """A worker: ("open", sid, image, mesh_px, output) | ("frame", sid, index, keypoints_px) |
    ("close", sid) | None (stop), in order; answers each frame with a RenderedFrame."""
    import cv2

    from spacelive.stream.sinks import pixel_sink

    cv2.setNumThreads(1)
    renderer = _make_renderer(spec)
    picture = np.empty((FRAME_SIZE, FRAME_SIZE, 3), np.uint8)  # every frame, encoded at once
    sessions: dict[int, tuple] = {}
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        kind, sid = message[0], message[1]
        try:
            if kind == "open":
                sessions[sid] = (renderer.prepare(message[2], message[3]), pixel_sink(message[4]))
            elif kind == "close":
                entry = sessions.pop(sid, None)
                if entry is not None:
                    entry[1].close()
            elif kind == "frame":
                source, sink = sessions[sid]
                t0 = time.perf_counter()
                rgb = renderer.render(source, message[3], picture)
                t1 = time.perf_counter()
                frame = sink.frame(rgb, message[2])
                conn.send(RenderedFrame(sid, frame, t1 - t0, time.perf_counter() - t1))
        except Exception as exc:  # this session's only
            log.exception("render worker: session %d failed", sid)
            sessions.pop(sid, None)
            if kind == "frame" or kind == "open":
                conn.send(RenderedFrame(sid, None, error=f"{type(exc).__name__}: {exc}"))


class _Worker:
    def __init__(self, context, spec: RendererSpec, on_result: Callable[[RenderedFrame], None]):
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(child, spec), name="spacelive-render", daemon=True
        )
        self.process.start()
        child.close()
        self.sessions: set[int] = set()
        self.alive = True
        self._send_lock = threading.Lock()
        self._on_result = on_result
        self._reader = threading.Thread(target=self._read, name="spacelive-render-rx", daemon=True)
        self._reader.start()

    def send(self, message) -> bool:
        with self._send_lock:
            if not self.alive:
                return False
            try:
                self.conn.send(message)
                return True
            except (OSError, ValueError):
                self.alive = False
                return False

    def _read(self) -> None:
        while True:
            try:
                result = self.conn.recv()
            except (EOFError, OSError):
                break
            self._on_result(result)
        self.alive = False
        for sid in list(self.sessions):  # died under its sessions
            self._on_result(RenderedFrame(sid, None, error="the render worker exited"))

    def stop(self) -> None:
        self.send(None)
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
        self.conn.close()


class RenderPool:
    """``workers`` render processes; ``on_result`` is called (on a reader thread) with every
    RenderedFrame."""

    def __init__(
        self,
        workers: int,
        on_result: Callable[[RenderedFrame], None],
        spec: RendererSpec = RendererSpec(),
    ):
        self._context = multiprocessing.get_context("spawn")
        self._spec = spec
        self._on_result = on_result
        self._lock = threading.Lock()
        self._workers = [self._start() for _ in range(max(1, workers))]
        self._placement: dict[int, _Worker] = {}

    def _start(self) -> _Worker:
        return _Worker(self._context, self._spec, self._on_result)

    def open(self, sid: int, image: np.ndarray, mesh_px: np.ndarray, output: str) -> None:
        """Place session ``sid`` (its portrait crop (512, 512, 3) uint8, mesh (478, 3) pixels
        and pixel output, "h264" or "rgb") on the least-loaded live worker."""
        with self._lock:
            self._workers = [w if w.alive else self._replace(w) for w in self._workers]
            worker = min(self._workers, key=lambda w: len(w.sessions))
            worker.sessions.add(sid)
            self._placement[sid] = worker
        if not worker.send(("open", sid, image, mesh_px, output)):
            self._on_result(RenderedFrame(sid, None, error="the render worker exited"))

    def render(self, sid: int, frame_index: int, keypoints_px: np.ndarray) -> None:
        worker = self._placement.get(sid)
        if worker is None or not worker.send(("frame", sid, frame_index, keypoints_px)):
            self._on_result(RenderedFrame(sid, None, error="the render worker exited"))

    def close(self, sid: int) -> None:
        with self._lock:
            worker = self._placement.pop(sid, None)
            if worker is not None:
                worker.sessions.discard(sid)
        if worker is not None:
            worker.send(("close", sid))

    def sessions_per_worker(self) -> list[int]:
        with self._lock:
            return [len(w.sessions) for w in self._workers]

    def shutdown(self) -> None:
        with self._lock:
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.stop()

    def _replace(self, dead: _Worker) -> _Worker:
        log.error("a render worker exited; starting another")
        dead.stop()
        return self._start()
