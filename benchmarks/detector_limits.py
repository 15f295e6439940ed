"""What the independent detector can see of a re-posed photo: the render checks' limits.

    python benchmarks/detector_limits.py [--portraits astronaut,grace_hopper,...]

`spacelive eval render` re-detects MediaPipe's face mesh on rendered frames. Two of its checks
fail on some standard portraits; this measures whether any re-projection of the one photo
could pass them, by rendering the same commands two more ways:

* **pose:** the check's yaw and pitch sweeps (-15..+15 degrees) rendered by the renderer and
  by an exact re-projection of the mesh: every triangle of the portrait's 468-point mesh
  (Delaunay) mapped affinely onto its rotated position, far triangles first, over the
  renderer's frame (which still moves what lies outside the mesh), so each feature of the
  face lands exactly where the rotated 3D face puts it. Both are re-detected and re-fitted as
  the check does (RMS error against the command).
* **blink:** the portrait with each eye painted over as an idealized closed eye (the opening,
  widened, filled with the skin colour under the eye, and a dark lash line): the eye aspect
  ratio the detector reads there, as a fraction of the open eye's (the check asks <= 30 %).

Writes benchmarks/results/detector_limits.json.
"""

import argparse
import json
import sys

import cv2
import numpy as np
from scipy.spatial import Delaunay

from spacelive import FRAME_SIZE
from spacelive.checks.bench import write_result
from spacelive.checks.render_checks import RenderChecker, eye_aspect_ratio
from spacelive.face.analysis import FaceAnalyzer, fit_head_pose, pixels_to_crop
from spacelive.face.landmarks import EYES
from spacelive.face.portraits import standard_portraits
from spacelive.face.rig import FaceCommand

ANGLES = np.arange(-15.0, 15.1, 5.0)
FACE_POINTS = 468  # the mesh without the iris points


def reproject(
    image: np.ndarray, source: np.ndarray, driving: np.ndarray, under: np.ndarray
) -> np.ndarray:
    """``under`` with every mesh triangle of ``image`` mapped affinely from ``source`` to
    ``driving`` (both (478, 3) pixels), painted far to near."""
    triangles = Delaunay(source[:FACE_POINTS, :2]).simplices
    frame = under.copy()
    for t in triangles[np.argsort(driving[triangles, 2].mean(axis=1))]:
        src, dst = source[t, :2].astype(np.float32), driving[t, :2].astype(np.float32)
        x0, y0 = np.maximum(np.floor(dst.min(axis=0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(dst.max(axis=0)).astype(int) + 1, FRAME_SIZE)
        if x1 <= x0 or y1 <= y0:
            continue
        to_source = cv2.getAffineTransform(dst - np.float32([x0, y0]), src)
        patch = cv2.warpAffine(
            image,
            to_source,
            (int(x1 - x0), int(y1 - y0)),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT,
        )
        inside = np.zeros(patch.shape[:2], np.uint8)
        cv2.fillConvexPoly(inside, np.round(dst - [x0, y0]).astype(np.int32), 1)
        frame[y0:y1, x0:x1][inside > 0] = patch[inside > 0]
    return frame


def pose_errors(analyzer, checker: RenderChecker, reprojected: bool) -> dict[str, float]:
    """RMS (degrees) of the re-fitted yaw and pitch against the command, as the check."""
    base = np.array(fit_head_pose(pixels_to_crop(checker.reference)).angles_deg())
    figures = {}
    for axis, name in ((0, "yaw"), (1, "pitch")):
        errors = []
        for angle in ANGLES:
            turn = [0.0, 0.0, 0.0]
            turn[axis] = float(np.radians(angle))
            frame, driving = checker._render(FaceCommand(yaw=turn[0], pitch=turn[1]))
            if reprojected:
                frame = reproject(checker.avatar.image, checker.avatar.mesh_px, driving, frame)
            mesh = analyzer.mesh(frame)
            if mesh is None:
                errors.append(float("nan"))
                continue
            found = np.array(fit_head_pose(pixels_to_crop(mesh)).angles_deg())
            errors.append(float(found[axis] - base[axis] - angle))
        figures[f"{name}_rms_deg"] = float(np.sqrt(np.mean(np.square(errors))))
    return figures


def idealized_blink(analyzer, image: np.ndarray, mesh: np.ndarray) -> float:
    """Closed-eye EAR over open-eye EAR on the portrait with both eyes painted shut."""
    shut = image.copy()
    for _, upper, lower, _ in EYES:
        opening = np.concatenate([mesh[upper, :2], mesh[lower[::-1], :2]])
        centre = opening.mean(axis=0)
        widened = centre + (opening - centre) * [1.1, 1.6]
        below = mesh[lower, :2] + [0.0, 6.0]
        skin = np.median([image[int(y), int(x)] for x, y in below], axis=0)
        cv2.fillPoly(shut, [np.round(widened).astype(np.int32)], [int(c) for c in skin])
        cv2.polylines(shut, [mesh[lower, :2].astype(np.int32)], False, (40, 30, 30), 2)
    closed = analyzer.mesh(shut)
    if closed is None:
        return float("nan")
    return eye_aspect_ratio(closed) / eye_aspect_ratio(analyzer.mesh(image))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--portraits", help="comma-separated standard portraits (default: all)")
    args = parser.parse_args()
    portraits = standard_portraits()
    names = args.portraits.split(",") if args.portraits else list(portraits)
    analyzer = FaceAnalyzer()
    report: dict = {"benchmark": "detector_limits", "angles_deg": ANGLES.tolist(), "portraits": {}}
    for name in names:
        avatar = analyzer.analyze(portraits[name])
        checker = RenderChecker(analyzer, avatar)
        report["portraits"][name] = {
            "pose_renderer": pose_errors(analyzer, checker, reprojected=False),
            "pose_exact_reprojection": pose_errors(analyzer, checker, reprojected=True),
            "blink_idealized_closed_fraction": idealized_blink(
                analyzer, avatar.image, avatar.mesh_px
            ),
        }
        print(name, json.dumps(report["portraits"][name]), flush=True)
    write_result("detector_limits", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
