"""Keypoint output: the coded motion decodes to within its quanta and tolerance, the reference
receiver renders what the server renders, and the stream fits a bad link."""

import asyncio

import av
import numpy as np
import pytest

from spacelive.checks.bench import speech_like
from spacelive.client.keypoints import KeypointReceiver
from spacelive.client.stream import Uplink, fetch_avatar_image, stream_audio
from spacelive.face.analysis import pose_landmarks
from spacelive.media.audio import frame_count
from spacelive.media.audio_input import InputError
from spacelive.motion.controls import ControlUpdate
from spacelive.motion.keypoints import (
    COEFFICIENT_UNIT,
    POSE_UNIT,
    TOLERANCE,
    KeypointDecoder,
    KeypointEncoder,
)
from spacelive.motion.loop import frontal_mesh, head_poses
from spacelive.stream.engine import DEFAULT_MODELS, Engine, EngineConfig
from tests.conftest import LiveServer


def _frames(engine, avatar, seconds=3.0, seed=2):
    from spacelive.media.audio import offline_mfcc

    update = ControlUpdate(
        gaze=(0.3, -0.2), blinks_per_minute=40, emotion=(0, 0.6, 0, 0, 0, 0, 0, 0)
    )
    state = engine.motion.new_state(avatar, update, seed=seed)
    return engine.motion.run(state, offline_mfcc(speech_like(seconds, seed=seed)))


def test_keypoint_frames_decode_within_their_quanta(engine, avatar):
    frames = _frames(engine, avatar)
    basis = engine.motion.stages.motion_basis
    encoder, decoder = KeypointEncoder(basis), KeypointDecoder(basis)
    frontal = frontal_mesh(avatar)
    for f in frames:
        flags, payload = encoder.encode(f)
        assert bool(flags & 1) == (f.frame_index % 60 == 0)
        got = decoder.decode(f.frame_index, flags, payload)
        assert np.abs(got.pose - f.pose).max() <= POSE_UNIT / 2 + 1e-7
        assert np.abs(got.expression - f.expression).max() <= TOLERANCE + COEFFICIENT_UNIT
        kp = pose_landmarks((frontal + got.expression)[None], *head_poses([avatar], got.pose[None]))
        # An error within TOLERANCE per frontal coordinate, turned and scaled into the crop.
        bound = (TOLERANCE + COEFFICIENT_UNIT) * np.sqrt(3) * avatar.pose.scale + 1e-5
        assert np.abs(kp[0] - f.keypoints).max() <= bound


def test_a_truncated_keypoint_frame_is_refused(engine, avatar):
    frames = _frames(engine, avatar, seconds=0.5)
    basis = engine.motion.stages.motion_basis
    flags, payload = KeypointEncoder(basis).encode(frames[0])
    with pytest.raises(ValueError, match="truncated"):
        KeypointDecoder(basis).decode(0, flags, payload[:-1] + bytes([0x80]))


def test_keypoint_output_needs_a_motion_basis(engine, avatar, monkeypatch):
    monkeypatch.setattr(engine.motion.stages, "motion_basis", None)
    with pytest.raises(InputError) as info:
        engine.open_session(avatar, output="keypoints")
    assert info.value.code == "keypoints_unavailable"


def _decode_h264(frames) -> list[np.ndarray]:
    codec = av.CodecContext.create("h264", "r")
    out = []
    for f in frames:
        for picture in codec.decode(av.Packet(f.data)):
            out.append(picture.to_ndarray(format="rgb24"))
    return out


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-12)))


def test_keypoint_stream_renders_like_the_video_and_fits_a_bad_link():
    """With the bundled models, over a real websocket: the reference receiver's frames match
    the server's video frames (as decoded) within PSNR 35 dB, at <= 16 kbit/s."""
    samples = speech_like(4.0, 16_000, seed=5)
    controls = {"emotion": {"happy": 0.5}, "gaze": [0.2, 0.1], "blinks_per_minute": 30}
    with LiveServer(DEFAULT_MODELS) as server:
        video = asyncio.run(
            stream_audio(server.ws_url, Uplink.pcm(samples, 16_000), controls=controls, seed=4)
        )
        keypoints = asyncio.run(
            stream_audio(
                server.ws_url,
                Uplink.pcm(samples, 16_000),
                controls=controls,
                seed=4,
                output="keypoints",
            )
        )
        image = fetch_avatar_image(server.ws_url, keypoints.ready["avatar_id"])
    assert len(keypoints.frames) == len(video.frames) == frame_count(len(samples), 16_000)
    assert all(f.kind == 2 for f in keypoints.frames)
    receiver = KeypointReceiver(keypoints.ready["keypoints"], image)
    rendered = [receiver.render(f) for f in keypoints.frames]
    decoded = _decode_h264(video.frames)
    psnr = [_psnr(a, b) for a, b in zip(rendered, decoded, strict=True)]
    assert min(psnr) >= 35, f"worst frame {int(np.argmin(psnr))}: {min(psnr):.1f} dB"
    assert keypoints.downlink_kbps() <= 16, keypoints.downlink_kbps()
    assert video.downlink_kbps() > 10 * keypoints.downlink_kbps()


def test_the_bundled_models_have_a_motion_basis():
    assert Engine(EngineConfig(models=DEFAULT_MODELS)).motion.stages.motion_basis is not None
