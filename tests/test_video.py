"""H.264 encoding and MP4 muxing."""

from pathlib import Path

import av
import numpy as np
import pytest

from spacelive.media.video import KEYFRAME_INTERVAL, H264Encoder, write_mp4


def _frames(n):
    encoder = H264Encoder()
    out = []
    for i in range(n):
        rgb = np.zeros((512, 512, 3), np.uint8)
        rgb[100 + i : 200 + i, 100:200] = (255, 128, 0)
        out.append(encoder.encode(rgb, i))
    return out


def test_one_annex_b_access_unit_per_frame_with_periodic_keyframes():
    frames = _frames(KEYFRAME_INTERVAL + 2)
    assert [f.frame_index for f in frames] == list(range(KEYFRAME_INTERVAL + 2))
    assert all(f.data.startswith(b"\x00\x00\x00\x01") for f in frames)
    assert [i for i, f in enumerate(frames) if f.keyframe] == [0, KEYFRAME_INTERVAL]
    # Each message decodes on its own into exactly one picture, with no decoder delay
    # (what a WebCodecs client feeding one EncodedVideoChunk per message relies on).
    decoder = av.CodecContext.create("h264", "r")
    for f in frames:
        assert len(decoder.decode(av.Packet(f.data))) == 1


def test_mp4_has_the_frames_at_30_fps_and_the_audio(tmp_path: Path):
    frames = _frames(45)
    audio = np.sin(np.arange(24_000 * 3 // 2) / 24_000 * 2 * np.pi * 220).astype(np.float32) * 0.3
    path = tmp_path / "out.mp4"
    write_mp4(path, frames, audio, 24_000)
    with av.open(str(path)) as container:
        video, sound = container.streams.video[0], container.streams.audio[0]
        assert (video.width, video.height, video.average_rate) == (512, 512, 30)
        assert float(video.duration * video.time_base) == pytest.approx(1.5)
        assert float(sound.duration * sound.time_base) == pytest.approx(1.5, abs=1 / 30)
        assert sum(1 for _ in container.decode(video=0)) == 45


def test_mp4_needs_a_keyframe_first(tmp_path: Path):
    with pytest.raises(ValueError, match="keyframe"):
        write_mp4(tmp_path / "x.mp4", _frames(3)[1:], None, 16_000)


def test_the_encoder_keeps_nothing_of_the_callers_frame():
    """Encoding a buffer that is overwritten after each call gives the bytes of encoding
    separate arrays: the encoder copies each frame before it returns."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (512, 512, 3), dtype=np.uint8) for _ in range(12)]
    separate = H264Encoder()
    expected = [separate.encode(f, i).data for i, f in enumerate(frames)]
    reused, buffer = H264Encoder(), np.empty_like(frames[0])
    got = []
    for i, f in enumerate(frames):
        np.copyto(buffer, f)
        got.append(reused.encode(buffer, i).data)
        buffer[:] = 0
    assert got == expected


def test_the_encoder_refuses_a_frame_of_the_wrong_shape():
    with pytest.raises(ValueError, match="expected"):
        H264Encoder().encode(np.zeros((256, 256, 3), np.uint8), 0)
