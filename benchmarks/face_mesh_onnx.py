"""The ONNX face mesh (``spacelive.face.onnx_mesh``) against MediaPipe on every standard
portrait, as the photo and as the avatar's 512 x 512 crop:

    python benchmarks/face_mesh_onnx.py

Writes benchmarks/results/face_mesh_onnx.json, per portrait and picture, the mean distance in
eye widths (the right eye's corners, 33-133) of all 468 points, the lips, the eyelids and the
irises:
- ``port``: against MediaPipe's own pipeline with the same models (``FaceMesh(refine_landmarks
  =False)``, 468 points), outside the eyes' 142 points that the iris model refines: how exact
  the port is;
- ``switch``: against today's mesh (``FaceAnalyzer.mesh``, MediaPipe's refined attention
  model, 478 points): what replacing it would cost;
and the milliseconds per mesh of each, on this machine, in one run (best of 5).
"""

import sys
import time

import mediapipe as mp
import numpy as np

from spacelive.checks.bench import write_result
from spacelive.face.analysis import FaceAnalyzer, decode_portrait
from spacelive.face.landmarks import (
    LEFT_EYELID,
    LEFT_IRIS,
    LOWER_INNER_LIP,
    LOWER_OUTER_LIP,
    RIGHT_EYELID,
    RIGHT_IRIS,
    UPPER_INNER_LIP,
    UPPER_OUTER_LIP,
)
from spacelive.face.onnx_mesh import EYE_CONTOURS, OnnxFaceMesh
from spacelive.face.portraits import standard_portraits

LIPS = sorted(set(UPPER_INNER_LIP + LOWER_INNER_LIP + UPPER_OUTER_LIP + LOWER_OUTER_LIP))
EYELIDS = sorted(set(RIGHT_EYELID + LEFT_EYELID))
IRISES = RIGHT_IRIS + LEFT_IRIS
UNREFINED = np.setdiff1d(np.arange(468), EYE_CONTOURS[0] + EYE_CONTOURS[1])


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per point, |a - b| in the image plane over a's eye width."""
    eye = np.linalg.norm(a[33, :2] - a[133, :2])
    return np.linalg.norm(a[:, :2] - b[: len(a), :2], axis=1) / eye


def best_ms(fn, rgb) -> float:
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        fn(rgb)
        times.append(time.perf_counter() - t0)
    return round(1000 * min(times), 2)


def main() -> int:
    analyzer, onnx = FaceAnalyzer(), OnnxFaceMesh()
    plain = mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True,
        max_num_faces=1,
        refine_landmarks=False,
        min_detection_confidence=0.3,
    )

    def plain_mesh(rgb):
        face = plain.process(np.ascontiguousarray(rgb)).multi_face_landmarks[0].landmark
        h, w = rgb.shape[:2]
        return np.array([(p.x * w, p.y * h, -p.z * w) for p in face])

    result: dict = {"benchmark": "face_mesh_onnx", "unit": "eye widths", "portraits": {}}
    for name, data in standard_portraits().items():
        pictures = {"photo": decode_portrait(data), "crop": analyzer.analyze(data).image}
        entry = {}
        for label, rgb in pictures.items():
            ours, today, same_models = onnx.mesh(rgb), analyzer.mesh(rgb), plain_mesh(rgb)
            if ours is None or today is None:
                entry[label] = {"found": ours is not None, "found_today": today is not None}
                continue
            port = distances(same_models, ours)[UNREFINED]
            switch = distances(today, ours)
            entry[label] = {
                "port": {"mean": round(float(port.mean()), 5), "max": round(float(port.max()), 5)},
                "switch": {
                    part: round(float(switch[index].mean()), 3)
                    for part, index in (
                        ("all", slice(0, 468)),
                        ("lips", LIPS),
                        ("eyelids", EYELIDS),
                        ("irises", IRISES),
                    )
                },
                "ms": {"onnx": best_ms(onnx.mesh, rgb), "mediapipe": best_ms(analyzer.mesh, rgb)},
            }
        result["portraits"][name] = entry
    write_result("face_mesh_onnx", result)
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
