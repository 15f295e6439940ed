"""The generator stage: source photo + source keypoints + driving keypoints -> 512x512 frame.

A keypoint-driven backward warp with synthesized content where a warp cannot invent it. One
``cv2.remap`` of the source through a sample map built from three layers, then paint:

1. **Global flow.** The displacement (source - driving) at each driving keypoint, spread by
   normalized Gaussian kernel regression (splat, blur, divide) on a coarse grid, with a
   constant background weight pulling the flow to zero away from the face, so hair, neck and
   background stay put and never tear. Inner-lip, eyelid and iris points are left to the
   layers below.
2. **Mouth.** In the mouth's own frame (corner to corner), each column maps the driving
   lips onto the source lips piecewise-linearly: the upper lip onto the upper lip, the lower
   onto the lower, so closing an open mouth brings the lips together and never drags teeth
   over them. The driving lips keep their own thickness within bounds (a model's lip that
   strays is not stretched into a wedge), and their inner edges leave the dark line between
   a closed portrait's lips behind as they part, so no outline rings the opening. Between the
   inner lips the renderer paints the mouth interior made from the photo itself
   (``mouth_look``), with a soft edge; a portrait that shows its teeth keeps its own.
3. **Eyes.** The same column mapping for the lids: the skin above the eye slides down with
   the upper lid and covers the eyeball, which itself does not move with the lid. The
   opening is painted with the iris-free eyeball and the iris at its driving position.

The feature maps are computed per pixel (the mouth's was once computed on a half-resolution
grid and upsampled: the jump between the two lips' source rows leaked an open portrait's teeth
into a barely parted mouth).

This is the CPU renderer: numpy/OpenCV on one core (``benchmarks/renderer.py``), resampling only
the window of the frame that moves. GPU hosts run its ONNX twin (``renderer_onnx.py``,
``export/renderer_graph.py``): the same program on whole frames, fed by ``frame_inputs``.
"""

import threading
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from spacelive import FRAME_SIZE
from spacelive.face.landmarks import (
    EYES,
    LOWER_INNER_LIP,
    LOWER_OUTER_LIP,
    MOUTH_CORNERS,
    UPPER_INNER_LIP,
    UPPER_OUTER_LIP,
)
from spacelive.render import mouth_look

GRID = 64
"""Global flow is computed on a GRID x GRID lattice (8-pixel cells) and upsampled."""
REFINEMENTS = 1
"""Residual passes that pull the smoothed flow onto the keypoints' own displacements."""
SIGMA_FACE_FRACTION = 0.04
"""Kernel width of the global flow as a fraction of the face size."""
BACKGROUND_WEIGHT = 0.1
"""Weight of the zero-flow background term, relative to one keypoint at distance 0."""
FULL_FRAME = (0, FRAME_SIZE, 0, FRAME_SIZE)
"""A window (y0, y1, x0, x1) covering the whole frame."""
MIN_ADVANCE = 0.25
"""The global map's source coordinates advance by at least this much per pixel (``_unfold``)."""
MOVING_PX = 1e-3
"""Global flow below this (in pixels) is the identity: those pixels are copied, not resampled."""
REST_TOLERANCE_PX = 0.25
"""A mouth or eye whose contours are within this of the portrait's, in the feature's own
frame, is at rest: the global warp renders it exactly and its layer is skipped."""
MOUTH_BAND = 0.25
"""Skin above and below the lips that the mouth layer re-maps, in mouth half-widths."""
SEAM_FADE = 0.15
"""The dark line between closed lips fades out over this much of the mouth's half-width at
each corner; drawn to the very corner it showed as dark ticks beyond a smile."""
LIP_THICKNESS = (0.7, 1.3)
"""A driving lip's thickness is held within these multiples of the portrait's (plus a pixel)."""
LIP_INSET_PX = 1.5
"""How far a parting lip's inner edge samples away from a closed portrait's meeting line."""
LIP_EDGE_L, LIP_EDGE_REACH = 10.0, 0.4
"""An open portrait's teeth, where they run past its inner-lip contour: pixels brighter than the
lip's median L* by LIP_EDGE_L, within LIP_EDGE_REACH of the lip's thickness (``_lip_edges``)."""
_LIP_EDGE_COLUMNS = 64
OWN_LOWER_SHOW = (0.35, 0.75)
"""A portrait's own lower teeth fade in between these shares of its own opening."""
LID_BAND, LOWER_LID_BAND = 1.2, 0.35
"""Skin above and below the eye opening that the eye layer re-maps, in eye half-widths."""
LASH_WIDTH = 0.1
"""The upper lid's lash line, kept unstretched as the lid closes, in eye half-widths."""
LID_SKIN_SEARCH = (0.12, 0.8)
"""Where a closing lid's skin is looked for, above the upper lid contour, in eye half-widths:
the lid is painted with the plainest row there. Stretching the skin above the eye drew the
crease, a drawing's lines or a glasses rim down over the eye as stripes."""

_LAYERED = sorted(
    set(UPPER_INNER_LIP[1:-1] + LOWER_INNER_LIP[1:-1])
    | {i for _, upper, lower, iris in EYES for i in upper[1:-1] + lower[1:-1] + iris}
)
_GLOBAL = np.setdiff1d(np.arange(478), _LAYERED)


@dataclass(frozen=True, slots=True)
class _Frame:
    """A feature's local frame: origin, unit axes (u along the feature, v perpendicular,
    pointing down the face) and half-length in pixels."""

    ox: float
    oy: float
    ux: float
    uy: float
    half: float

    @staticmethod
    def between(left: np.ndarray, right: np.ndarray) -> "_Frame":
        dx, dy = float(right[0] - left[0]), float(right[1] - left[1])
        length = max(float(np.hypot(dx, dy)), 1e-3)
        return _Frame(
            float(left[0] + right[0]) / 2,
            float(left[1] + right[1]) / 2,
            dx / length,
            dy / length,
            length / 2,
        )

    def local(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels -> (u in half-lengths, v in pixels); v's axis is (-uy, ux)."""
        rx, ry = x - self.ox, y - self.oy
        return (rx * self.ux + ry * self.uy) / self.half, ry * self.ux - rx * self.uy

    def astuple(self) -> tuple[float, float, float, float, float]:
        return self.ox, self.oy, self.ux, self.uy, self.half

    def pixels(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        along = u * self.half
        return self.ox + along * self.ux - v * self.uy, self.oy + along * self.uy + v * self.ux


_PROFILE_SAMPLES = 512
_PROFILE_GRID = np.linspace(-1.0, 1.0, _PROFILE_SAMPLES, dtype=np.float32)


def _profile_tables(frame: _Frame, contours: list[np.ndarray]) -> np.ndarray:
    """(n_contours, _PROFILE_SAMPLES): each contour's v at evenly spaced u in [-1, 1]."""
    tables = []
    for points in contours:
        cu, cv = frame.local(points[:, 0], points[:, 1])
        order = np.argsort(cu)
        tables.append(np.interp(_PROFILE_GRID, cu[order], cv[order]))
    return np.array(tables, np.float32)


def _profile_index(u: np.ndarray) -> np.ndarray:
    """Table column of each pixel's u (clipped to [-1, 1])."""
    return np.rint((np.clip(u, -1.0, 1.0) + 1.0) * ((_PROFILE_SAMPLES - 1) / 2)).astype(np.intp)


@dataclass(frozen=True, slots=True)
class _SourceFeature:
    """A mouth or an eye of the portrait: its frame and contour profiles."""

    frame: _Frame
    tables: np.ndarray  # (n_contours, _PROFILE_SAMPLES)
    iris_radius: float = 0.0
    lid_skin: float = 0.0  # an eye: how far above its upper contour the lid skin is, px


def _lid_skin(image: np.ndarray, frame: _Frame, upper_table: np.ndarray) -> float:
    """Distance (px, in the eye's frame) above the upper lid contour of the plainest row of
    skin: bright and even across the eye, clear of the lashes, a crease or a glasses rim."""
    u = np.linspace(-0.7, 0.7, 32, dtype=np.float32)
    lid_v = upper_table[_profile_index(u)]
    offsets = np.linspace(LID_SKIN_SEARCH[0], LID_SKIN_SEARCH[1], 24) * frame.half
    x, y = frame.pixels(u[None], lid_v[None] - offsets[:, None])  # (24, 32)
    luminance = _sample(image, x.astype(np.float32), y.astype(np.float32)).mean(axis=-1)
    score = luminance.mean(axis=1) - 2.0 * luminance.std(axis=1)
    return float(offsets[int(np.argmax(score))])


def _lip_edges(image: np.ndarray, frame: _Frame, tables: np.ndarray) -> np.ndarray:
    """(2, _PROFILE_SAMPLES) px: how far beyond the portrait's inner-lip contour (upward for
    the upper lip, downward for the lower) its lips truly begin. A detected contour can run
    across the edge of an open mouth's teeth; closing lips that sampled from it drew a bright,
    broken line where they meet. Per column, the run of pixels brighter than the lip (by
    LIP_EDGE_L) that reaches the contour from inside is taken as teeth, over at most
    LIP_EDGE_REACH of the lip; the edges are widened over neighbouring columns and smoothed."""
    u = np.linspace(-1.0, 1.0, _LIP_EDGE_COLUMNS, dtype=np.float32)
    ou, iu, il, ol = tables[:, _profile_index(u)]
    steps = np.linspace(0.0, 1.0, 25, dtype=np.float32)[:, None]
    columns = np.arange(len(u))
    parted = il - iu > 1.0  # where the lips meet, they begin at their contour
    edges = []
    for inner, outer in ((iu, ou), (il, ol)):
        body = inner + (outer - inner) * np.linspace(0.4, 0.8, 6, dtype=np.float32)[:, None]
        x, y = frame.pixels(np.broadcast_to(u, body.shape), body)
        body_l = mouth_look.to_lab(_sample(image, x, y))[..., 0]
        lip_l = float(np.median(body_l[:, np.abs(u) < 0.7]))
        start = inner - np.sign(outer - inner) * np.clip((il - iu) / 2, 0.0, 3.0)
        end = inner + (outer - inner) * LIP_EDGE_REACH
        scan = start + (end - start) * steps  # (steps, columns), from inside outward
        x, y = frame.pixels(np.broadcast_to(u, scan.shape), scan)
        bright = mouth_look.to_lab(_sample(image, x, y))[..., 0] > lip_l + LIP_EDGE_L
        at = np.abs(scan - inner).argmin(axis=0)  # the contour's step in each column
        beyond = ~bright & (np.arange(len(steps))[:, None] >= at)
        stop = np.where(beyond.any(axis=0), beyond.argmax(axis=0), len(steps) - 1)
        reaches = bright[np.maximum(at - 1, 0), columns] | bright[at, columns]
        edge = np.where(reaches & parted, np.abs(scan[stop, columns] - inner), 0.0)
        edge = edge.astype(np.float32)
        edge = cv2.dilate(edge[None], np.ones((1, 5), np.uint8))[0]
        edge = cv2.GaussianBlur(edge[None], (0, 0), 1.5, borderType=cv2.BORDER_REPLICATE)[0]
        edges.append(np.interp(_PROFILE_GRID, u, edge))
    return np.array(edges, np.float32)


def _source_features(image: np.ndarray, kp: np.ndarray) -> dict[str, _SourceFeature]:
    mouth = _Frame.between(kp[MOUTH_CORNERS[0]], kp[MOUTH_CORNERS[1]])
    features = {"mouth": _SourceFeature(mouth, _profile_tables(mouth, [kp[c] for c in _LIPS]))}
    for name, upper, lower, iris in EYES:
        frame = _Frame.between(kp[upper[0]], kp[upper[-1]])
        radius = float(np.linalg.norm(kp[iris[1:], :2] - kp[iris[0], :2], axis=1).mean())
        tables = _profile_tables(frame, [kp[upper], kp[lower]])
        features[name] = _SourceFeature(frame, tables, radius, _lid_skin(image, frame, tables[0]))
    return features


_LIPS = (UPPER_OUTER_LIP, UPPER_INNER_LIP, LOWER_INNER_LIP, LOWER_OUTER_LIP)


@dataclass(frozen=True, slots=True)
class RenderSource:
    """What the renderer precomputes per avatar."""

    image: np.ndarray  # (512, 512, 3) uint8
    clean: np.ndarray  # (512, 512, 3) uint8: the source with its irises painted out
    kp_source_px: np.ndarray  # (478, 3) float32
    sigma_px: float
    shows_teeth: bool  # the portrait's own teeth can be reused
    lip_edges: np.ndarray  # (2, _PROFILE_SAMPLES) px, ``_lip_edges``
    features: dict[str, _SourceFeature]
    mouth: mouth_look.MouthLook


class Renderer(Protocol):
    """What sessions need of a renderer: ``WarpRenderer`` or its ONNX twin."""

    def prepare(self, image: np.ndarray, kp_source_px: np.ndarray) -> RenderSource: ...

    def render(
        self, source: RenderSource, kp_driving_px: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray: ...


class WarpRenderer:
    """Numpy/OpenCV CPU renderer. ``render`` is pure: same inputs, same bytes."""

    def __init__(self) -> None:
        cell = FRAME_SIZE / GRID
        # Cell centres of a grid one cell larger on every side: the base map is linear, so
        # bilinear upsampling reproduces it exactly once the border cells are cropped away.
        centres = (np.arange(-1, GRID + 1, dtype=np.float32) + 0.5) * cell - 0.5
        gx, gy = np.meshgrid(centres, centres)
        self._coarse_base = np.stack([gx, gy], axis=-1)
        self._pad = int(cell)
        # The least a source coordinate advances from the first grid cell on (``_unfold``).
        self._advance = MIN_ADVANCE * cell * np.arange(GRID + 2, dtype=np.float32)
        base = np.arange(FRAME_SIZE, dtype=np.float32)
        self._base_x, self._base_y = np.meshgrid(base, base)
        self._scratch = threading.local()  # per thread: the upsampled flow of the frame

    @staticmethod
    def prepare(image: np.ndarray, kp_source_px: np.ndarray) -> RenderSource:
        """image: (512, 512, 3) uint8; kp_source_px: (478, 3) pixels."""
        image = np.ascontiguousarray(image)
        kp = np.asarray(kp_source_px, dtype=np.float32)
        face_size = float(np.ptp(kp[:, :2], axis=0).max())
        irises = np.zeros(image.shape[:2], np.uint8)
        opening = np.zeros_like(irises)
        for _, upper, lower, iris in EYES:
            radius = np.linalg.norm(kp[iris[1:], :2] - kp[iris[0], :2], axis=1).mean()
            centre = tuple(int(c) for c in np.round(kp[iris[0], :2]))
            cv2.circle(irises, centre, int(np.ceil(radius * 1.25)), 255, -1)
            contour = np.concatenate([kp[upper, :2], kp[lower[::-1], :2]])
            cv2.fillPoly(opening, [np.round(contour).astype(np.int32)], 255)
        irises &= cv2.dilate(opening, np.ones((3, 3), np.uint8))
        clean = cv2.inpaint(image, irises, 5, cv2.INPAINT_TELEA) if irises.any() else image
        features = _source_features(image, kp)
        frame = features["mouth"].frame
        return RenderSource(
            image=image,
            clean=clean,
            kp_source_px=kp,
            sigma_px=SIGMA_FACE_FRACTION * face_size,
            shows_teeth=_shows_teeth(image, kp),
            lip_edges=_lip_edges(image, frame, features["mouth"].tables),
            features=features,
            mouth=mouth_look.analyse(
                image, kp, frame.half, lambda p: frame.local(p[:, 0], p[:, 1])[1]
            ),
        )

    def sample_map(self, source: RenderSource, kp_driving_px: np.ndarray) -> np.ndarray:
        """The global layer: (512, 512, 2) float32 source coordinates for every output pixel."""
        driving = np.asarray(kp_driving_px, dtype=np.float32)
        return self._upsample_flow(self._coarse_flow(source, driving), FULL_FRAME).copy()

    def _coarse_flow(self, source: RenderSource, kp_driving_px: np.ndarray) -> np.ndarray:
        """(GRID + 2, GRID + 2, 2) source coordinates at the centres of the padded grid."""
        driving = kp_driving_px[_GLOBAL, :2]
        displacement = (source.kp_source_px[_GLOBAL, :2] - driving).astype(np.float64)
        cell = FRAME_SIZE / GRID
        pos = np.clip(driving / cell - 0.5, 0, GRID - 1.001)
        i0 = np.floor(pos).astype(np.int64)
        fx, fy = (pos - i0).T.astype(np.float64)
        # Bilinear footprint: every point touches its 4 neighbouring cells.
        base = i0[:, 1] * GRID + i0[:, 0]
        index = np.concatenate([base, base + 1, base + GRID, base + GRID + 1])
        weights = np.concatenate([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
        sigma = source.sigma_px / cell

        def smooth(values: np.ndarray) -> np.ndarray:  # (n, c) at the points -> (GRID, GRID, c)
            splat = (
                np.stack(
                    [
                        np.bincount(index, np.tile(values[:, c], 4) * weights, GRID * GRID)
                        for c in range(values.shape[1])
                    ],
                    axis=-1,
                )
                .astype(np.float32)
                .reshape(GRID, GRID, -1)
            )
            out = cv2.GaussianBlur(splat, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
            return out.reshape(GRID, GRID, -1)

        def at_points(field: np.ndarray) -> np.ndarray:  # (GRID, GRID, 2) -> (n, 2)
            flat = field.reshape(-1, 2)
            return (flat[index].reshape(4, -1, 2) * weights.reshape(4, -1, 1)).sum(axis=0)

        peak = 1.0 / (2 * np.pi * sigma**2)  # a lone point's blurred weight at its centre
        norm = smooth(np.ones((len(driving), 1))) + BACKGROUND_WEIGHT * peak
        field = smooth(displacement) / norm
        for _ in range(REFINEMENTS):  # fit the keypoints more closely than one smoothing does
            field += smooth(displacement - at_points(field)) / norm
        coarse = self._coarse_base.copy()
        coarse[1:-1, 1:-1] += field
        _unfold(coarse, self._advance)
        return coarse

    def _upsample_flow(self, coarse: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
        """Bilinear upsampling of the coarse map, only for the pixels of ``window``: the cells
        it needs (one more on each side) are resized alone and give the same values as
        resizing the whole grid. The result is a view of this thread's scratch buffer, valid
        until its next call."""
        y0, y1, x0, x1 = window
        cell = self._pad
        cy0, cx0 = y0 // cell, x0 // cell
        cy1, cx1 = min((y1 - 1) // cell + 3, GRID + 2), min((x1 - 1) // cell + 3, GRID + 2)
        crop = coarse[cy0:cy1, cx0:cx1]
        scratch = getattr(self._scratch, "flow", None)
        if scratch is None:  # (GRID + 2) cells a side: the largest resize, made once
            side = (GRID + 2) * cell
            scratch = self._scratch.flow = np.empty((side, side, 2), np.float32)
        height, width = (cy1 - cy0) * cell, (cx1 - cx0) * cell
        full = scratch[:height, :width]
        cv2.resize(crop, (width, height), dst=full, interpolation=cv2.INTER_LINEAR)
        oy, ox = (cy0 - 1) * cell, (cx0 - 1) * cell
        return full[y0 - oy : y1 - oy, x0 - ox : x1 - ox]

    def _moving_window(self, source: RenderSource, coarse: np.ndarray, driving: np.ndarray):
        """The cell-aligned box (y0, y1, x0, x1) outside which nothing moves: the global flow
        there is below MOVING_PX and no feature layer reaches it. None when nothing moves."""
        shift = np.abs(coarse[1:-1, 1:-1] - self._coarse_base[1:-1, 1:-1]).max(axis=-1)
        rows, cols = np.nonzero(shift > MOVING_PX)
        cell = self._pad
        boxes = []
        if len(rows):  # upsampling blends each cell with its neighbours: one cell more
            boxes.append(
                (
                    (rows.min() - 1) * cell,
                    (rows.max() + 2) * cell,
                    (cols.min() - 1) * cell,
                    (cols.max() + 2) * cell,
                )
            )
        for points, margin in _layer_reach(source, driving):
            boxes.append(
                (
                    points[:, 1].min() - margin,
                    points[:, 1].max() + margin,
                    points[:, 0].min() - margin,
                    points[:, 0].max() + margin,
                )
            )
        if not boxes:
            return None
        y0, y1, x0, x1 = np.array(boxes, np.float64).T
        snap = lambda lo, hi: (  # noqa: E731
            int(np.clip(np.floor(lo.min() / cell) * cell, 0, FRAME_SIZE)),
            int(np.clip(np.ceil(hi.max() / cell) * cell, 0, FRAME_SIZE)),
        )
        (top, bottom), (left, right) = snap(y0, y1), snap(x0, x1)
        if bottom <= top or right <= left:
            return None
        return top, bottom, left, right

    def render(
        self, source: RenderSource, kp_driving_px: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:
        """kp_driving_px: (478, >=2) pixels -> (512, 512, 3) uint8 frame.

        ``out``: a (512, 512, 3) uint8 C-contiguous array to render into and return, for
        callers that encode each frame before the next (a session, a render worker): the
        frame then allocates nothing at its own size. None: a new array."""
        frame = frame_buffer(source, out)
        np.copyto(frame, source.image)
        driving = moving_keypoints(source, kp_driving_px)
        if driving is None:
            return frame  # the rest pose: nothing moves, nothing to resample
        coarse = self._coarse_flow(source, driving)
        window = self._moving_window(source, coarse, driving)
        if window is None:
            return frame
        sample = _Window(window, self._upsample_flow(coarse, window))
        paint = [self._mouth(source, driving, sample)]
        paint += [self._eye(source, driving, eye, sample) for eye in EYES]
        y0, y1, x0, x1 = window
        cv2.remap(
            source.image,
            sample.xy,
            None,
            cv2.INTER_LINEAR,
            dst=frame[y0:y1, x0:x1],
            borderMode=cv2.BORDER_REPLICATE,
        )
        for layer in paint:
            if layer is not None:
                (y0, _, x0, _), rgb, alpha = layer
                rows, cols = np.nonzero(alpha)
                a = alpha[rows, cols][:, None]
                under = frame[rows + y0, cols + x0].astype(np.float32)
                frame[rows + y0, cols + x0] = (under + a * (rgb[rows, cols] - under)).astype(
                    np.uint8
                )
        return frame

    def frame_inputs(self, source: RenderSource, kp_driving_px: np.ndarray) -> dict:
        """The small per-frame inputs of the renderer's ONNX twin (``renderer_onnx``): the
        coarse global flow and, per feature, its source and driving frames, contour profiles
        and whether it moved. The twin does the per-pixel work of ``render`` from these."""
        driving = np.asarray(kp_driving_px, dtype=np.float32)
        mouth = source.features["mouth"]
        f_drv = _Frame.between(driving[MOUTH_CORNERS[0]], driving[MOUTH_CORNERS[1]])
        mouth_tables = _driving_lips(mouth, f_drv, driving)
        mouth_moved = _contours_moved(mouth, f_drv, mouth_tables)
        eye_frames, eye_tables, irises, eye_moved, iris_moved = [], [], [], [], []
        for name, upper, lower, iris in EYES:
            feature = source.features[name]
            e_drv = _Frame.between(driving[upper[0]], driving[upper[-1]])
            tables = _profile_tables(e_drv, [driving[upper], driving[lower]])
            centre_d, centre_s = driving[iris[0], :2], source.kp_source_px[iris[0], :2]
            iris_off = _iris_moved(feature, e_drv, centre_d, centre_s)
            lids_off = _contours_moved(feature, e_drv, tables)
            eye_frames.append([feature.frame.astuple(), e_drv.astuple()])
            eye_tables.append([feature.tables, tables])
            irises.append([centre_s, centre_d, [feature.iris_radius, feature.lid_skin]])
            eye_moved.append(lids_off or iris_off)
            iris_moved.append(iris_off)
        f32 = lambda a: np.asarray(a, np.float32)[None]  # noqa: E731  batch of one
        return {
            "coarse": f32(self._coarse_flow(source, driving)),
            "mouth_frames": f32([mouth.frame.astuple(), f_drv.astuple()]),
            "mouth_tables": f32([mouth.tables, mouth_tables]),
            "mouth_moved": f32([float(mouth_moved)]),
            "lip_edges": f32(source.lip_edges),
            "teeth": f32([*_teeth_geometry(source, f_drv, driving), float(source.shows_teeth)]),
            "teeth_texture": f32(source.mouth.texture),
            "mouth_colours": f32(source.mouth.colours),
            "eye_frames": f32(eye_frames),
            "eye_tables": f32(eye_tables),
            "irises": f32(irises),
            "eye_moved": f32(eye_moved),
            "iris_moved": f32(iris_moved),
        }

    # -- layers ------------------------------------------------------------------------------

    def _roi(self, points: np.ndarray, margin: float):
        """The box (even sides) around points and the pixel grids in it."""
        x0 = max(int(points[:, 0].min() - margin), 0)
        y0 = max(int(points[:, 1].min() - margin), 0)
        x1 = min(int(points[:, 0].max() + margin) + 2, FRAME_SIZE)
        y1 = min(int(points[:, 1].max() + margin) + 2, FRAME_SIZE)
        x0, y0 = x0 - (x1 - x0) % 2, y0 - (y1 - y0) % 2
        if x1 - x0 < 4 or y1 - y0 < 4 or x0 < 0 or y0 < 0:
            return None
        return (y0, y1, x0, x1), self._base_x[y0:y1, x0:x1], self._base_y[y0:y1, x0:x1]

    @staticmethod
    def _blend(sample: "_Window", box, weight, tx, ty) -> None:
        y0, y1, x0, x1 = box
        wy, wx = sample.window[0], sample.window[2]
        roi = sample.xy[y0 - wy : y1 - wy, x0 - wx : x1 - wx]
        roi[..., 0] += weight * (tx - roi[..., 0])
        roi[..., 1] += weight * (ty - roi[..., 1])

    def _mouth(self, source: RenderSource, driving: np.ndarray, sample: "_Window"):
        feature = source.features["mouth"]
        f_src = feature.frame
        f_drv = _Frame.between(driving[MOUTH_CORNERS[0]], driving[MOUTH_CORNERS[1]])
        band = MOUTH_BAND * f_drv.half
        found = self._roi(_mouth_points(feature, f_drv, driving), _mouth_margin(f_drv))
        if found is None:
            return None
        drv_tables = _driving_lips(feature, f_drv, driving)
        if not _contours_moved(feature, f_drv, drv_tables):
            return None  # lips where they were in the mouth's frame: the global warp is exact
        box, bx, by = found
        # The map, per pixel (on a half-resolution grid, upsampled, a barely parted mouth's
        # pixels at the lower lip took source rows between the two lips' edges, and an open
        # portrait's teeth showed there): columns of the mouth frame, piecewise linear in v,
        # its pieces' coefficients made once per column (``_mouth_columns``).
        u, v = f_drv.local(bx, by)
        index = _profile_index(u)
        columns = _mouth_columns(feature.tables, drv_tables, source.lip_edges, band)
        breaks = np.take(columns[:4], index, axis=1)  # ou_d, iu_d, il_d, ol_d
        piece = (v[None] >= breaks).sum(axis=0)
        flat = piece * _PROFILE_SAMPLES + index
        offset, slope = np.take(columns[4:9], flat), np.take(columns[9:14], flat)
        tx, ty = f_src.pixels(u, offset + slope * v)
        # Full weight on the lips, fading to the global warp across the skin from each outer
        # lip to the band's end, and beyond the corners.
        top, rise, bottom, fall = np.take(columns[14:18], index, axis=1)
        inside_v = np.clip(np.minimum((v - top) * rise, (bottom - v) * fall), 0, 1)
        inside_u = np.clip((1.22 - np.abs(u)) / 0.22, 0.0, 1.0)
        from_upper, from_lower = v - breaks[1], breaks[2] - v
        self._blend(sample, box, inside_v * inside_u, tx, ty)

        # The interior, painted at full resolution between the inner lips with a soft edge;
        # closed lips keep a faint dark line, which also hides where the upsampled map jumps
        # from the upper to the lower lip. It fades out toward the corners, where the lips
        # meet without one.
        alpha = mouth_look.interior_alpha(from_upper, from_lower)
        alpha *= np.clip((1.0 - np.abs(u)) / SEAM_FADE, 0.0, 1.0)
        inside = alpha > 0
        if not inside.any():
            return None
        rgb = np.zeros(u.shape + (3,), np.float32)
        fu, fl, ui = from_upper[inside], from_lower[inside], u[inside]
        geometry = _teeth_geometry(source, f_drv, driving)
        rgb[inside] = mouth_look.paint(source.mouth, geometry, ui, v[inside], fu, fl, f_drv.half)
        if source.shows_teeth:
            iu_s, il_s = np.take(feature.tables[1:3], index[inside], axis=1)
            own = self._own_teeth(source, ui, fu, fl, iu_s, il_s, f_src, f_drv)
            if own is not None:
                use, colours, weight = own
                rows, cols = np.nonzero(inside)
                # Barely parted lips show a dark line, not the portrait's teeth.
                shown = (mouth_look.teeth_shown((fu + fl)[use] / geometry[2]) * weight)[:, None]
                painted = rgb[rows[use], cols[use]]
                rgb[rows[use], cols[use]] = painted + shown * (colours - painted)
        return box, rgb, alpha

    @staticmethod
    def _own_teeth(source, u, from_upper, from_lower, iu_s, il_s, f_src, f_drv):
        """Where the portrait's own opening shows teeth at the same depth, their colours and
        weights: (which of the given interior pixels, (n, 3) colours, (n,) weights), or None.
        The upper row hangs from the upper lip and shows at any opening. The lower row rides
        on the jaw: it shows as the opening nears the portrait's own (OWN_LOWER_SHOW of it);
        before that the painted interior's dark gap is below the upper teeth. Both rows filled
        a slight opening with white from lip to lip, which read as closed lips with a strip
        of teeth between them."""
        scale = f_src.half / f_drv.half
        depth_up, depth_down = iu_s + from_upper * scale, il_s - from_lower * scale
        use_upper = (depth_up < il_s - 1.0) & (from_upper <= from_lower)
        use_lower = (depth_down > iu_s + 1.0) & ~use_upper & (from_lower < from_upper)
        use = use_upper | use_lower
        if not use.any():
            return None
        depth = np.where(use_upper, depth_up, depth_down)[use]
        sx, sy = f_src.pixels(u[use], depth)
        share = (from_upper + from_lower)[use] * scale / np.maximum(il_s - iu_s, 1.0)[use]
        weight = np.where(use_upper[use], 1.0, mouth_look.smoothstep(share, *OWN_LOWER_SHOW))
        return use, _sample(source.image, sx[None], sy[None])[0], weight.astype(np.float32)

    def _eye(self, source: RenderSource, driving: np.ndarray, eye, sample: "_Window"):
        name, upper, lower, iris = eye
        feature = source.features[name]
        f_src = feature.frame
        f_drv = _Frame.between(driving[upper[0]], driving[upper[-1]])
        lid_band, lower_band = LID_BAND * f_drv.half, LOWER_LID_BAND * f_drv.half
        found = self._roi(np.concatenate([driving[upper], driving[lower]]), _eye_margin(f_drv))
        if found is None:
            return None
        drv_tables = _profile_tables(f_drv, [driving[upper], driving[lower]])
        centre_d, centre_s = driving[iris[0], :2], source.kp_source_px[iris[0], :2]
        cu_d, cv_d = f_drv.local(centre_d[0], centre_d[1])
        cu_s, cv_s = f_src.local(centre_s[0], centre_s[1])
        scale = f_drv.half / f_src.half
        iris_moved = _iris_moved(feature, f_drv, centre_d, centre_s)
        if not (iris_moved or _contours_moved(feature, f_drv, drv_tables)):
            return None  # lids and iris where they were in the eye: the global warp is exact
        # Full resolution here: the lids meet in a sharp seam that upsampling would blur
        # into the eyeball, and an eye is small enough for it to cost little.
        box, x, y = found
        u, v = f_drv.local(x, y)
        index = _profile_index(u)
        up_d, lo_d = np.take(drv_tables, index, axis=1)
        up_s, lo_s = np.take(feature.tables, index, axis=1)
        lo_d = np.maximum(lo_d, up_d)
        top = np.minimum(up_d, up_s) - lid_band
        bottom = np.maximum(lo_d, lo_s) + lower_band
        # A closing lid carries everything between its edge and the plain skin above it (lashes,
        # a drawn lid line) down unchanged, and the skin row fills in above; an opening lid
        # keeps its thin lash line and stretches the skin above it.
        closing = up_d > up_s
        lash = np.where(closing, feature.lid_skin, LASH_WIDTH * f_drv.half)
        # Below the lids, the lower lid from its contour down: a closed eye shows its lash line.
        v_src = bottom - (bottom - v) * (bottom - lo_s) / np.maximum(bottom - lo_d, 1e-3)
        eyeball = v <= lo_d
        # The eyeball does not move with the lids: it keeps its place in the eye's frame.
        v_src[eyeball] = np.clip(v, up_s + 0.5, np.maximum(lo_s - 0.5, up_s + 0.5))[eyeball]
        lid = v < up_d
        v_src[lid] = (v - up_d + up_s - 1)[lid]
        skin = v < up_d - lash
        stretch = (up_s - 1 - lash - top) / np.maximum(up_d - lash - top, 1e-3)
        fill = np.minimum(v, up_s - 1 - lash)
        v_src[skin] = np.where(closing, fill, top + (v - top) * stretch)[skin]
        tx, ty = f_src.pixels(u, v_src)
        inside_v = np.clip(np.minimum((v - top) / lid_band, (bottom - v) / lower_band), 0.0, 1.0)
        inside_u = np.clip((1.15 - np.abs(u)) / 0.15, 0.0, 1.0)
        self._blend(sample, box, inside_v * inside_u, tx, ty)
        from_upper, from_lower = v - up_d, lo_d - v
        within = np.abs(u) <= 1
        opening = np.clip(np.minimum(from_upper, from_lower) + 0.5, 0.0, 1.0) * within
        rows, cols = np.flatnonzero(opening.any(axis=1)), np.flatnonzero(opening.any(axis=0))
        if iris_moved and len(rows):
            # Paint the opening (only its bounding box: nothing is painted elsewhere): the
            # iris-free eyeball, with the iris at its driving position.
            cut = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
            x, y, u, v, tx, ty = x[cut], y[cut], u[cut], v[cut], tx[cut], ty[cut]
            radius = feature.iris_radius * scale
            iris_alpha = np.clip(radius + 0.5 - np.hypot(x - centre_d[0], y - centre_d[1]), 0, 1)
            ball = _sample(source.clean, tx, ty)
            if iris_alpha.any():
                ix, iy = f_src.pixels(u - cu_d + cu_s, v - cv_d + cv_s)
                ball += iris_alpha[..., None] * (_sample(source.image, ix, iy) - ball)
            y0, x0 = box[0] + rows[0], box[2] + cols[0]
            sub = (y0, y0 + len(ball), x0, x0 + ball.shape[1])
            return sub, ball, opening[cut]
        return None


def _unfold(coarse: np.ndarray, advance: np.ndarray) -> None:
    """In place, (n, n, 2) source coordinates on the padded grid: down each column the source
    y, and along each row the source x, advance by at least MIN_ADVANCE of a cell per cell
    (``advance``: (n,) that least advance, cell by cell). Where the flow falls off faster than
    the pixels advance (below a chin that rises as an open mouth closes) the map would fold
    back, sample the chin a second time and draw its ghost; held to advance, it stretches the
    skin beyond instead. s'(i) = max(s(i), s'(i - 1) + m) is m i + the running max of s - m j."""
    for axis, component in ((0, 1), (1, 0)):
        ramp = advance[:, None] if axis == 0 else advance[None, :]
        values = coarse[..., component] - ramp
        np.maximum.accumulate(values, axis=axis, out=values)
        coarse[..., component] = values + ramp


def frame_buffer(source: RenderSource, out: np.ndarray | None) -> np.ndarray:
    """The array a frame is rendered into: ``out`` (checked: the source's shape, uint8,
    C-contiguous) or a new one."""
    if out is None:
        return np.empty_like(source.image)
    if out.shape != source.image.shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(
            f"out must be a C-contiguous {source.image.shape} uint8 array, "
            f"not {out.shape} {out.dtype}"
        )
    return out


def moving_keypoints(source: RenderSource, kp_driving_px: np.ndarray) -> np.ndarray | None:
    """Driving keypoints as float32, checked; None at the rest pose, where nothing moves."""
    driving = np.asarray(kp_driving_px, dtype=np.float32)
    if not np.all(np.isfinite(driving)):
        raise ValueError("driving keypoints contain NaN or infinity")
    if np.abs(source.kp_source_px[:, :2] - driving[:, :2]).max() < 1e-3:
        return None
    return driving


def _contours_moved(feature: _SourceFeature, f_drv: _Frame, drv_tables: np.ndarray) -> bool:
    """A feature's driving contours away from the portrait's, in its own (scaled) frame."""
    scale = f_drv.half / feature.frame.half
    return bool(np.abs(drv_tables - feature.tables * scale).max() >= REST_TOLERANCE_PX)


def _iris_moved(
    feature: _SourceFeature, f_drv: _Frame, centre_d: np.ndarray, centre_s: np.ndarray
) -> bool:
    """The iris centre away from its place in the eye's frame."""
    cu_d, cv_d = f_drv.local(centre_d[0], centre_d[1])
    cu_s, cv_s = feature.frame.local(centre_s[0], centre_s[1])
    scale = f_drv.half / feature.frame.half
    return bool(
        abs(cu_d - cu_s) * f_drv.half >= REST_TOLERANCE_PX
        or abs(cv_d - cv_s * scale) >= REST_TOLERANCE_PX
    )


@dataclass(frozen=True, slots=True)
class _Window:
    """The part of the frame that moves: its box (y0, y1, x0, x1) and its sample map."""

    window: tuple[int, int, int, int]
    xy: np.ndarray  # (y1 - y0, x1 - x0, 2) float32 source coordinates


def _mouth_margin(frame: _Frame) -> float:
    return MOUTH_BAND * frame.half + 2


def _eye_margin(frame: _Frame) -> float:
    return LID_BAND * frame.half + 2


def _mouth_points(feature: _SourceFeature, f_drv: _Frame, driving: np.ndarray) -> np.ndarray:
    """(n, 2) pixels the mouth layer's band is measured from: the driving outer lips and the
    portrait's, placed in the driving mouth's frame. A portrait's open mouth closing reaches
    below the driving lower lip (its band ends past the portrait's); a box around the driving
    lips alone cut the layer off there and drew a step across the chin."""
    step = _PROFILE_SAMPLES // 32
    u = _PROFILE_GRID[::step]
    placed = [np.stack(f_drv.pixels(u, feature.tables[i, ::step]), axis=-1) for i in (0, 3)]
    return np.concatenate([driving[UPPER_OUTER_LIP + LOWER_OUTER_LIP, :2], *placed])


def _layer_reach(source: RenderSource, driving: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """(points, margin) of every feature layer: the boxes they may re-map (see ``_roi``)."""
    mouth = _Frame.between(driving[MOUTH_CORNERS[0]], driving[MOUTH_CORNERS[1]])
    points = _mouth_points(source.features["mouth"], mouth, driving)
    reach = [(points, _mouth_margin(mouth) + 2)]
    for _, upper, lower, _ in EYES:
        eye = _Frame.between(driving[upper[0]], driving[upper[-1]])
        reach.append((driving[upper + lower], _eye_margin(eye) + 2))
    return reach


def _sample(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``image`` at (x, y) pixel positions, float32 RGB."""
    return cv2.remap(
        image,
        x.astype(np.float32),
        y.astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    ).astype(np.float32)


def _driving_lips(feature: _SourceFeature, f_drv: _Frame, driving: np.ndarray) -> np.ndarray:
    """(4, _PROFILE_SAMPLES) driving lip profiles (outer upper, inner upper, inner lower, outer
    lower) in the driving mouth's frame, each lip's thickness held within LIP_THICKNESS of the
    portrait's (scaled): a lip point that strays from its lip (a model's, a transfer's) would
    otherwise drag the lip into a wedge or fold it."""
    ou, iu, il, ol = _profile_tables(f_drv, [driving[c] for c in _LIPS])
    ou_s, iu_s, il_s, ol_s = feature.tables * (f_drv.half / feature.frame.half)
    lo, hi = LIP_THICKNESS
    iu = ou + np.clip(iu - ou, lo * (iu_s - ou_s), hi * (iu_s - ou_s) + 1.0)
    il = ol - np.clip(ol - il, lo * (ol_s - il_s), hi * (ol_s - il_s) + 1.0)
    return np.array([ou, iu, np.maximum(il, iu), ol], np.float32)


def _mouth_columns(
    tables: np.ndarray, drv_tables: np.ndarray, lip_edges: np.ndarray, band: float
) -> np.ndarray:
    """(18, _PROFILE_SAMPLES) per column of the mouth's frame: the driving lip contours (4:
    outer upper, inner upper, inner lower, outer lower, kept ordered with lips of at least a
    pixel), then for the five pieces of the column that they bound (skin above, upper lip,
    interior, lower lip, skin below) the source row v_src = offset + slope * v (5 offsets,
    5 slopes), then the band's top, 1 / (outer upper - top), bottom and 1 / (bottom - outer
    lower), for the layer's weight. Each lip maps onto the portrait's (its inner edge
    ``_lip_inset`` beyond the portrait's inner contour), the skin above and below stretches
    to the band's end, and the interior (painted over) samples the upper lip's edge."""
    ou_s, iu_s, il_s, ol_s = tables
    ou_d, iu_d, il_d, ol_d = drv_tables
    iu_d = np.maximum(iu_d, ou_d + 1)
    il_d = np.maximum(il_d, iu_d)
    ol_d = np.maximum(ol_d, il_d + 1)
    top = np.minimum(ou_d, ou_s) - band
    bottom = np.maximum(ol_d, ol_s) + band
    inset_up, inset_down = _lip_inset(il_d - iu_d, il_s - iu_s, *lip_edges)
    upper_edge, lower_edge = iu_s - inset_up, il_s + inset_down

    def line(v0, s0, v1, s1):  # the map through (v0 -> s0) and (v1 -> s1): (offset, slope)
        slope = (s1 - s0) / np.maximum(v1 - v0, 1e-3)
        return s0 - slope * v0, slope

    pieces = [
        line(top, top, ou_d, ou_s),
        line(ou_d, ou_s, iu_d, upper_edge),
        (iu_s, np.zeros_like(iu_s)),
        line(il_d, lower_edge, ol_d, ol_s),
        line(ol_d, ol_s, bottom, bottom),
    ]
    offsets, slopes = zip(*pieces, strict=True)
    rise = 1.0 / np.maximum(ou_d - top, 1e-3)
    fall = 1.0 / np.maximum(bottom - ol_d, 1e-3)
    weight = [top, rise, bottom, fall]
    return np.array([ou_d, iu_d, il_d, ol_d, *offsets, *slopes, *weight], np.float32)


def _lip_inset(gap_driving, gap_source, edge_upper, edge_lower):
    """(upper, lower) px: how far each lip's inner edge samples away from the portrait's inner
    contour. Where the portrait's lips meet, that contour is their dark meeting line, which
    stretched open drew an outline around the opening: LIP_INSET_PX as they part, zero while
    they stay closed. Where the portrait's mouth is open, its contour borders the teeth and the
    shaded rim, which closed lips would show as a bright line: LIP_INSET_PX beyond the lip's
    true edge (``_lip_edges``), the whole way."""
    parting = LIP_INSET_PX * np.clip(gap_driving / 2.0, 0, 1)
    open_source = np.clip(gap_source / 4.0, 0, 1)
    return (
        np.maximum(parting, open_source * (LIP_INSET_PX + edge_upper)),
        np.maximum(parting, open_source * (LIP_INSET_PX + edge_lower)),
    )


def _teeth_geometry(source: RenderSource, f_drv: _Frame, driving: np.ndarray) -> np.ndarray:
    """(3,) this frame's upper incisal edge (hung from the nose: the maxilla moves with the
    head) and lower incisal edge (from the chin: it rides on the jaw), as v in the driving
    mouth's frame (px), and the eye width (px), all scaled as the face is."""
    look = source.mouth
    eyes = float(np.linalg.norm(source.kp_source_px[263, :2] - source.kp_source_px[33, :2]))
    scale = float(np.linalg.norm(driving[263, :2] - driving[33, :2])) / max(eyes, 1e-3)
    _, nose = f_drv.local(driving[mouth_look.NOSE, 0], driving[mouth_look.NOSE, 1])
    _, chin = f_drv.local(driving[mouth_look.CHIN, 0], driving[mouth_look.CHIN, 1])
    upper = float(nose) + look.maxilla * scale
    lower = float(chin) - look.jaw * scale
    drop = max(lower - (upper - mouth_look.OVERBITE * f_drv.half), 0.0)
    lower -= mouth_look.LOWER_SHOW * drop
    return np.array([upper, lower, look.eye_width * scale], np.float32)


def _shows_teeth(image: np.ndarray, kp: np.ndarray) -> bool:
    """Whether the portrait's mouth shows teeth the renderer can reuse."""
    contour = np.concatenate([kp[UPPER_INNER_LIP, :2], kp[LOWER_INNER_LIP[::-1], :2]])
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(contour).astype(np.int32)], 255)
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8))
    pixels = image[mask > 0].astype(np.float64)
    if len(pixels) >= 30:
        brightness = pixels.mean(axis=1)
        bright = pixels[brightness > np.percentile(brightness, 60)]
        return bool(len(bright) and bright.mean() > 120 and np.ptp(bright.mean(axis=0)) < 60)
    return False
