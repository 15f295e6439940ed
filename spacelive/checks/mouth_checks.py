"""How believable a rendered mouth is, measured on the frame with an independently re-detected
face mesh (never the renderer's own keypoints). Colours are CIE Lab (L* 0-100), lengths are in
eye widths (eye corner to corner, both eyes averaged).

Per frame (``MouthFrame``):

* opening: the inner-lip gap at the centre;
* seam (closed frames): along the line where the lips meet, the brightest L* within +-3 px
  across it, minus the lips' own median L*. Real closed lips read about +6; a strip of painted
  teeth between them reads +18 and more;
* teeth (open frames): the brightest quarter of the mouth interior against the photo's sclera
  (``mouth_look.sclera_lab`` on the portrait's own re-detected mesh), (dL*, da*, db*). Real
  teeth read db* -6..0 and da* -13..+1 against their own sclera;
* cavity (open frames): the darkest 30 % of the interior, L* minus the skin's;
* ring (open frames): L* just inside the inner-lip contour (0.5-2 px) minus L* further in
  (3-6 px). A painted outline shows as strongly negative.

``summarize`` turns a clip's frames into the figures ``spacelive eval render`` reports.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from spacelive.face.landmarks import (
    LOWER_INNER_LIP,
    LOWER_OUTER_LIP,
    UPPER_INNER_LIP,
    UPPER_OUTER_LIP,
)
from spacelive.face.rig import inner_lip_gap
from spacelive.render.mouth_look import eye_width, polygon_mask, to_lab

CLOSED_EW = 0.04
"""A frame whose re-detected opening is below this (eye widths) counts as closed."""
OPEN_EW = 0.15
"""A frame whose re-detected opening is above this counts as open (teeth, cavity, ring)."""
SEAM_REACH_PX = 3
TARGETS = {
    "opening_range_ew_min": 0.12,
    "seam_l_max": 12.0,
    "teeth_db_min": -8.0,
    "teeth_da_min": -16.0,
}
_CHEEKS = (50, 280)


def opening_ew(mesh: np.ndarray) -> float:
    """Inner-lip gap at the centre, in eye widths."""
    return inner_lip_gap(mesh) / eye_width(mesh)


def interior_mask(shape, mesh: np.ndarray) -> np.ndarray:
    """(H, W) uint8: inside the inner-lip contour."""
    return polygon_mask(shape, np.concatenate([mesh[UPPER_INNER_LIP], mesh[LOWER_INNER_LIP[::-1]]]))


def lip_mask(shape, mesh: np.ndarray) -> np.ndarray:
    """(H, W) uint8: between the outer and the inner lip contours, a pixel clear of both."""
    outer = polygon_mask(
        shape, np.concatenate([mesh[UPPER_OUTER_LIP], mesh[LOWER_OUTER_LIP[::-1]]])
    )
    inner = cv2.dilate(interior_mask(shape, mesh), np.ones((3, 3), np.uint8))
    return cv2.erode(outer, np.ones((3, 3), np.uint8)) & ~inner


def skin_l(lab: np.ndarray, mesh: np.ndarray) -> float:
    """Median L* of 9x9 patches on both cheeks."""
    patches = []
    for point in _CHEEKS:
        x, y = np.round(mesh[point, :2]).astype(int)
        patches.append(lab[max(y - 4, 0) : y + 5, max(x - 4, 0) : x + 5, 0].ravel())
    return float(np.median(np.concatenate(patches)))


def _bilinear(channel: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return cv2.remap(channel, x.astype(np.float32), y.astype(np.float32), cv2.INTER_LINEAR).astype(
        np.float32
    )


def seam_l(lab: np.ndarray, mesh: np.ndarray) -> float:
    """Brightest L* within SEAM_REACH_PX across the lips' meeting line, minus the lips' median
    L*, averaged along the line's central part (the corners excluded)."""
    lips = lab[..., 0][lip_mask(lab.shape, mesh) > 0]
    upper = mesh[UPPER_INNER_LIP[2:-2], :2]
    lower = mesh[LOWER_INNER_LIP[2:-2], :2]
    middle = (upper + lower) / 2
    along = mesh[UPPER_INNER_LIP[-1], :2] - mesh[UPPER_INNER_LIP[0], :2]
    across = np.array([-along[1], along[0]]) / max(float(np.linalg.norm(along)), 1e-6)
    steps = np.arange(-SEAM_REACH_PX, SEAM_REACH_PX + 0.5, 0.5)
    x = middle[:, 0, None] + steps[None] * across[0]
    y = middle[:, 1, None] + steps[None] * across[1]
    brightest = _bilinear(np.ascontiguousarray(lab[..., 0]), x, y).max(axis=1)
    return float(brightest.mean() - np.median(lips)) if len(lips) else float("nan")


@dataclass(frozen=True, slots=True)
class MouthFrame:
    """One rendered frame's mouth figures; NaN where the frame is not closed (seam) or not
    open (teeth, cavity, ring)."""

    opening_ew: float
    seam_l: float
    teeth_dlab: tuple[float, float, float]
    cavity_dl: float
    ring_dl: float


def measure(frame: np.ndarray, mesh: np.ndarray, sclera: np.ndarray | None) -> MouthFrame:
    """frame: (H, W, 3) uint8; mesh: (478, 3) re-detected on it; sclera: the portrait's
    ``sclera_lab`` (None: teeth colour not measured)."""
    nan = float("nan")
    lab = to_lab(frame)
    opening = opening_ew(mesh)
    seam = seam_l(lab, mesh) if opening < CLOSED_EW else nan
    teeth, cavity, ring = (nan, nan, nan), nan, nan
    if opening > OPEN_EW:
        inside = interior_mask(frame.shape, mesh)
        depth = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
        interior = lab[depth >= 1.0]
        if len(interior) >= 40:
            order = np.argsort(interior[:, 0])
            quarter = max(len(order) // 4, 1)
            if sclera is not None:
                dl, da, db = interior[order[-quarter:]].mean(axis=0) - sclera
                teeth = (float(dl), float(da), float(db))
            dark = interior[order[: max(int(0.3 * len(order)), 1)], 0].mean()
            cavity = float(dark - skin_l(lab, mesh))
            rim, deeper = lab[(depth >= 0.5) & (depth <= 2.0), 0], lab[(depth >= 3) & (depth <= 6)]
            if len(rim) and len(deeper):
                ring = float(rim.mean() - deeper[:, 0].mean())
    return MouthFrame(opening, seam, teeth, cavity, ring)


def summarize(frames: list[MouthFrame | None]) -> dict[str, float]:
    """A clip's figures; None marks a frame the detector could not find."""
    found = [f for f in frames if f is not None]
    figures: dict[str, float] = {
        "frames": float(len(frames)),
        "undetected": float(len(frames) - len(found)),
    }
    if not found:
        return figures
    opening = np.array([f.opening_ew for f in found])
    seam = np.array([f.seam_l for f in found if np.isfinite(f.seam_l)])
    teeth = np.array([f.teeth_dlab for f in found if np.all(np.isfinite(f.teeth_dlab))])
    cavity = np.array([f.cavity_dl for f in found if np.isfinite(f.cavity_dl)])
    ring = np.array([f.ring_dl for f in found if np.isfinite(f.ring_dl)])
    figures["opening_range_ew"] = float(np.percentile(opening, 95) - np.percentile(opening, 5))
    figures["closed_frames"] = float(len(seam))
    figures["open_frames"] = float(len(cavity))
    if len(seam):
        figures["seam_l_mean"] = float(seam.mean())
        figures["seam_l_p90"] = float(np.percentile(seam, 90))
    if len(teeth):
        for i, name in enumerate(("dl", "da", "db")):
            figures[f"teeth_{name}"] = float(np.median(teeth[:, i]))
    if len(cavity):
        figures["cavity_dl"] = float(np.median(cavity))
    if len(ring):
        figures["ring_dl"] = float(np.median(ring))
    return figures


def verdict(figures: dict[str, float]) -> bool:
    """The targets: every frame found, the opening spans enough, closed lips show no strip,
    open-mouth teeth have the photo's colour (a figure with no frames to measure passes)."""
    return bool(
        figures.get("undetected", 1.0) == 0
        and figures.get("opening_range_ew", 0.0) >= TARGETS["opening_range_ew_min"]
        and figures.get("seam_l_p90", -np.inf) <= TARGETS["seam_l_max"]
        and figures.get("teeth_db", np.inf) >= TARGETS["teeth_db_min"]
        and figures.get("teeth_da", np.inf) >= TARGETS["teeth_da_min"]
    )
