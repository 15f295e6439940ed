"""Offline rendering: a stream in its synchronous form (``Engine.open_stream``), fed the whole
file; the same frames as streaming, byte for byte."""

from pathlib import Path

import numpy as np

from spacelive.face.analysis import FaceAnalyzer
from spacelive.media.audio import pcm_s16le, read_audio
from spacelive.media.audio_input import AudioSpec
from spacelive.media.video import EncodedFrame, write_mp4
from spacelive.motion.controls import ControlUpdate
from spacelive.stream.engine import Engine

FEED_SECONDS = 1.0


def render_frames(
    engine: Engine,
    image: bytes,
    samples: np.ndarray,
    sample_rate: int,
    controls: ControlUpdate | None = None,
    seed: int = 0,
    output: str = "h264",
) -> list[EncodedFrame]:
    """Portrait bytes + mono float audio -> the frames a stream would receive."""
    avatar = FaceAnalyzer().analyze(image)
    stream = engine.open_stream(avatar, AudioSpec(sample_rate=sample_rate), controls, seed, output)
    try:
        pcm = pcm_s16le(samples)
        step = 2 * int(sample_rate * FEED_SECONDS)
        for start in range(0, len(pcm), step):
            stream.push_audio(pcm[start : start + step])
        stream.end()
        return [item for item in stream if isinstance(item, EncodedFrame)]
    finally:
        stream.close()


def render_file(
    engine: Engine,
    image_path: Path,
    audio_path: Path,
    out: Path,
    controls: ControlUpdate | None = None,
    seed: int = 0,
) -> list[EncodedFrame]:
    """`spacelive render`: writes the MP4 and returns its frames."""
    samples, rate = read_audio(audio_path)
    frames = render_frames(engine, Path(image_path).read_bytes(), samples, rate, controls, seed)
    write_mp4(Path(out), frames, samples, rate)
    return frames
