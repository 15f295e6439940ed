"""Lips that meet: the closure head's verdict applied to the spoken landmarks.

Speech2Landmarks knows where a p, b or m is, but it averages: its lips come close and stop
short. The closure head (a small graph on the same audio-encoder features, trained on the
exact bilabial intervals of the synthetic corpus; ``spacelive.training.train_closure``) gives
per frame the probability that the lips are sealed. Where it fires on lips already near, the
lower lip rises to meet the upper one (``close_lips``): the closure is a constraint on the
inner-lip gap, eased in over the probability's rise, not a target averaged with the others.
"""

import numpy as np

from spacelive.face.landmarks import (
    IBUG_LOWER_INNER_LIP,
    IBUG_LOWER_OUTER_LIP,
    IBUG_UPPER_INNER_LIP,
)

SEALED = (0.3, 0.5)
"""The lips close from none to all of their gap as the head's probability goes between these."""
NEAR = (0.1, 0.17)
"""Gaps (normalized units, ears 2 apart, per unit of the mouth-scale control) that close fully
below the first and not at all above the second: a closure never shuts an open vowel."""
_OUTER_SHARE = np.array([0.5, 0.8, 1.0, 0.8, 0.5], np.float32)  # 59 58 57 56 55: the centre most


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def closure_amount(sealed: np.ndarray, gap: np.ndarray, mouth_scale: np.ndarray) -> np.ndarray:
    """(B,) share of the gap to close: from the head's probability ``sealed`` (B,), held off
    where the lips are far apart (``gap`` (B,), normalized, scaled by ``mouth_scale`` (B,))."""
    near = 1.0 - _smoothstep(gap / np.maximum(mouth_scale, 1e-3), *NEAR)
    return (_smoothstep(sealed, *SEALED) * near).astype(np.float32)


def close_lips(landmarks: np.ndarray, amount: np.ndarray) -> np.ndarray:
    """(B, 110, 3) landmarks with each lower inner-lip point raised by ``amount`` (B,) of its
    gap to the upper one, and the outer lower lip with them (so the lip keeps its thickness)."""
    out = landmarks.copy()
    upper, lower = IBUG_UPPER_INNER_LIP, IBUG_LOWER_INNER_LIP  # both left to right: pairs
    gaps = np.maximum(out[:, lower, 1] - out[:, upper, 1], 0.0)  # (B, 3)
    rise = amount[:, None] * gaps
    out[:, lower, 1] -= rise
    outer = IBUG_LOWER_OUTER_LIP
    out[:, outer, 1] -= _OUTER_SHARE[None] * rise[:, 1:2]
    return out
