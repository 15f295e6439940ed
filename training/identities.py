"""Speaker identities for training: real detected faces, mirrored, with shape perturbations."""

from pathlib import Path

import numpy as np

from spacelive.face.head_model import face_model, mirror_permutation
from spacelive.face.landmarks import (
    EMOTIONS,
    LEFT_EAR,
    MESH_TO_SPARSE,
    MOUTH,
    RIGHT_EAR,
    SPARSE_POINTS,
)
from spacelive.training.teacher import (
    emotion_offsets,
)


def identity_bank(cache: Path | None = None) -> np.ndarray:
    """(K, 110, 3) normalized rest landmarks: the generic face model, each public-domain
    portrait shipped in a registry package, and their mirror images (the teacher and S2L
    close their lips)."""
    if cache is not None and cache.exists():
        return np.load(cache)
    from spacelive.face.analysis import FaceAnalyzer
    from spacelive.face.portraits import standard_portraits

    analyzer = FaceAnalyzer()
    faces = [face_model()[MESH_TO_SPARSE]] + [
        analyzer.analyze(data).landmarks0.astype(np.float64)
        for data in standard_portraits().values()
    ]
    bank = []
    for face in faces:
        mirrored = (face * np.array([-1.0, 1.0, 1.0]))[mirror_permutation(face)]
        bank += [face, mirrored]
    bank_array = np.array(bank, np.float32)
    if cache is not None:
        np.save(cache, bank_array)
    return bank_array


REST_SMILE_SHARE = 0.3
"""Share of training identities whose portrait smiles."""


DEFORMATION = 0.06
"""Scale of the smooth random shape change, in normalized units (ears 2 apart): each of its
five terms moves the face's edge by DEFORMATION / 2 at one standard deviation."""


def smooth_deformation(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 3) displacements of face points (N, 3), sparse or mesh, from a random quadratic
    field over the face's (x, y): longer or shorter noses and chins, wider-set eyes, a higher
    mouth. A handful of real faces alone let S2L learn each face by heart and misbehave on
    the next one."""
    x, y = face[:, 0], face[:, 1]
    basis = np.stack([x, y, x * x, x * y, y * y], axis=1)  # (N, 5), constant terms excluded
    basis /= np.maximum(np.abs(basis).max(axis=0), 1e-9)
    coefficients = rng.normal(0, DEFORMATION / 2, size=(5, 3))
    coefficients[:, 2] *= 0.5  # depth varies less
    return basis @ coefficients


def perturb(identity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random face shape: overall width and height, mouth width, lip thickness, jaw width;
    and the portrait's own expression: some smile."""
    face = identity.astype(np.float64).copy()
    if rng.random() < REST_SMILE_SHARE:
        smile = np.zeros(len(EMOTIONS))
        smile[EMOTIONS.index("happy")] = rng.uniform(0.2, 0.8)
        face += emotion_offsets(smile)
    face[:, 0] *= rng.uniform(0.92, 1.08)
    face[:, 1] *= rng.uniform(0.92, 1.08)
    centre = face[MOUTH].mean(axis=0)
    face[MOUTH, 0] = centre[0] + (face[MOUTH, 0] - centre[0]) * rng.uniform(0.85, 1.15)
    lips_y = face[MOUTH, 1] - centre[1]
    face[MOUTH, 1] = centre[1] + lips_y * rng.uniform(0.8, 1.2)
    jaw = slice(0, 17)
    face[jaw, 0] *= rng.uniform(0.95, 1.05)
    face += smooth_deformation(face, rng)
    face += rng.normal(0, 0.004, size=(SPARSE_POINTS, 3))
    # Back to the normalization's contract: ears 2 apart.
    ears = np.linalg.norm(face[LEFT_EAR, :2] - face[RIGHT_EAR, :2])
    return (face * (2.0 / ears)).astype(np.float32)
