"""The reference keypoint receiver: renders a keypoint stream (output "keypoints") into
video on the client, as a conferencing client on a bad link would.

    spacelive client render-keypoints ws://HOST:PORT/v1/stream --audio speech.wav -o out.mp4

(``spacelive.client.stream.run_stream`` with output "keypoints").

From ``ready.keypoints`` it takes the portrait's rig and the motion basis; the portrait's
pixels come from GET /v1/avatars/{id}/image (once). Each keypoint frame is decoded
(``spacelive.motion.keypoints``): the portrait's frontal mesh plus the frame's expression, posed by
the frame's head pose, are the renderer's keypoints; the numpy renderer draws them.
"""

import numpy as np

from spacelive.face.analysis import crop_to_pixels, pose_landmarks
from spacelive.media.video import EncodedFrame
from spacelive.motion.keypoints import KeypointDecoder, MotionBasis, avatar_from_rig
from spacelive.motion.loop import frontal_mesh, head_poses
from spacelive.render.renderer import Renderer, WarpRenderer


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
