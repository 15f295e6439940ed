"""The reference keypoint receiver: renders a keypoint stream (output "keypoints") into
video on the client, as a conferencing client on a bad link would.

    spacelive client render-keypoints ws://HOST:PORT/v1/stream --audio speech.wav -o out.mp4

From ``ready.keypoints`` it takes the portrait's rig and the motion basis; the portrait's
pixels come from GET /v1/avatars/{id}/image (once). Each keypoint frame is decoded
(``spacelive.keypoints``): the portrait's frontal mesh plus the frame's expression, posed by
the frame's head pose, are the renderer's keypoints; the numpy renderer draws them.
"""

import asyncio
import io
import json
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from spacelive.audio import read_audio
from spacelive.client.stream import StreamError, Uplink, http_base, stream_audio, upload_portrait
from spacelive.face import crop_to_pixels, pose_landmarks
from spacelive.keypoints import KeypointDecoder, MotionBasis, avatar_from_rig
from spacelive.motion import frontal_mesh, head_poses
from spacelive.renderer import Renderer, WarpRenderer
from spacelive.video import EncodedFrame, H264Encoder, write_mp4


class KeypointReceiver:
    """``ready.keypoints`` + the portrait crop (512, 512, 3) -> renders frames in order."""

    def __init__(self, keypoints: dict, image: np.ndarray, renderer: Renderer | None = None):
        self.avatar = avatar_from_rig(keypoints["rig"], image)
        self._decoder = KeypointDecoder(MotionBasis.from_json(keypoints["basis"]))
        self._frontal = frontal_mesh(self.avatar)
        self._renderer = renderer or WarpRenderer()
        self._source = self._renderer.prepare(image, self.avatar.mesh_px)

    def keypoints(self, frame: EncodedFrame) -> np.ndarray:
        """A kind-2 frame -> the renderer's keypoints (478, 3), crop coordinates."""
        if frame.kind != 2:
            raise ValueError(f"frame {frame.frame_index} is kind {frame.kind}, not keypoints")
        flags = 1 if frame.keyframe else 0
        motion = self._decoder.decode(frame.frame_index, flags, frame.data)
        face = (self._frontal + motion.expression)[None]
        return pose_landmarks(face, *head_poses([self.avatar], motion.pose[None]))[0]

    def render(self, frame: EncodedFrame) -> np.ndarray:
        """A kind-2 frame -> RGB (512, 512, 3) uint8."""
        return self._renderer.render(self._source, crop_to_pixels(self.keypoints(frame)))


def fetch_avatar_image(ws_url: str, avatar_id: str) -> np.ndarray:
    url = f"{http_base(ws_url)}/v1/avatars/{avatar_id}/image"
    with urllib.request.urlopen(url, timeout=60) as response:
        return np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))


def render_keypoint_stream(
    url: str,
    audio_path: Path,
    out: Path,
    image: Path | None = None,
    realtime: bool = False,
    stats_path: Path | None = None,
    controls: dict | None = None,
    seed: int = 0,
) -> dict:
    """The `spacelive client render-keypoints` command: returns the stats it also writes."""
    samples, rate = read_audio(audio_path)
    avatar_id = upload_portrait(url, Path(image).read_bytes()) if image else "default"
    result = asyncio.run(
        stream_audio(
            url,
            Uplink.pcm(samples, rate),
            avatar_id,
            realtime,
            controls=controls,
            seed=seed,
            output="keypoints",
        )
    )
    if "keypoints" not in result.ready:
        raise StreamError("the server did not start a keypoint stream")
    receiver = KeypointReceiver(
        result.ready["keypoints"], fetch_avatar_image(url, result.ready["avatar_id"])
    )
    encoder = H264Encoder()
    video = [encoder.encode(receiver.render(f), f.frame_index) for f in result.frames]
    encoder.close()
    write_mp4(Path(out), video, samples, rate)
    stats = result.stats()
    stats.update(
        {
            "audio_seconds": len(samples) / rate,
            "keypoint_kbps": result.downlink_kbps(),
            "setup_bytes": len(json.dumps(result.ready)),
            "output": str(out),
        }
    )
    if stats_path:
        Path(stats_path).write_text(json.dumps(stats, indent=2) + "\n")
    return stats
