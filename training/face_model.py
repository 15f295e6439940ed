"""Build the generic 3D face model that head-pose fitting uses (spacelive/assets/face_model.npy).

    python -m spacelive.training.face_model

The model is the mean frontal 478-point mesh of public-domain portraits shipped in registry
packages (and their mirror images), made exactly left-right symmetric. Frontal means rotated by
the axes of the face's own symmetry (``face.symmetry_rotation``), centred and scaled like the
normalized landmarks (ears 2 apart).
"""

import numpy as np

from spacelive.face.analysis import FaceAnalyzer, normalize_landmarks, pixels_to_crop, symmetry_pose
from spacelive.face.head_model import MODEL_PATH, mirror_permutation


def build() -> np.ndarray:
    import matplotlib.cbook
    import skimage.data
    from PIL import Image

    analyzer = FaceAnalyzer()
    images = [
        skimage.data.astronaut(),
        np.asarray(
            Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
        ),
    ]
    frontal = []
    for rgb in images:
        for variant in (rgb, rgb[:, ::-1]):
            mesh = analyzer.mesh(np.ascontiguousarray(variant))
            if mesh is None:
                raise RuntimeError("a model portrait lost its face")
            crop = pixels_to_crop(mesh)
            frontal.append(normalize_landmarks(crop, symmetry_pose(crop)))
    mean = np.mean(frontal, axis=0)
    mirrored = mean * np.array([-1.0, 1.0, 1.0])
    perm = mirror_permutation(mean)
    return ((mean + mirrored[perm]) / 2).astype(np.float32)


if __name__ == "__main__":
    model = build()
    np.save(MODEL_PATH, model)
    print(f"wrote {MODEL_PATH}: {model.shape}")
