"""Offline rendering: the same session code as streaming, fed the whole file."""

from pathlib import Path

import numpy as np

from spacelive.audio import pcm_s16le, read_audio
from spacelive.audio_input import AudioSpec
from spacelive.controls import ControlUpdate
from spacelive.engine import Engine
from spacelive.face import FaceAnalyzer
from spacelive.video import EncodedFrame, write_mp4

FEED_SECONDS = 1.0


def render_frames(
    engine: Engine,
    image: bytes,
    samples: np.ndarray,
    sample_rate: int,
    controls: ControlUpdate | None = None,
    seed: int = 0,
) -> list[EncodedFrame]:
    """Portrait bytes + mono float audio -> the encoded frames a stream would receive."""
    avatar = FaceAnalyzer().analyze(image)
    session = engine.open_session(avatar, AudioSpec(sample_rate=sample_rate), controls, seed)
    try:
        pcm = pcm_s16le(samples)
        step = 2 * int(sample_rate * FEED_SECONDS)
        frames = []
        for start in range(0, len(pcm), step):
            frames += session.feed(pcm[start : start + step])
        frames += session.flush()
        return frames
    finally:
        session.close()


def render_file(
    engine: Engine,
    image_path: Path,
    audio_path: Path,
    out: Path,
    controls: ControlUpdate | None = None,
    seed: int = 0,
    contact_sheet: Path | None = None,
) -> int:
    """`spacelive render`: writes the MP4 (and a contact sheet of frames across the clip, if
    asked) and returns the frame count."""
    samples, rate = read_audio(audio_path)
    frames = render_frames(engine, Path(image_path).read_bytes(), samples, rate, controls, seed)
    write_mp4(Path(out), frames, samples, rate)
    if contact_sheet is not None:
        from PIL import Image

        from spacelive.sheet import contact_sheet as grid
        from spacelive.sheet import decoded_frames

        Image.fromarray(grid(decoded_frames(frames))).save(contact_sheet)
    return len(frames)
