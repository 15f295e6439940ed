"""The mouth interior, made from the portrait's own light: what the renderer paints between the
inner lips when they part further than the photo shows.

Once per avatar (``analyse``):

* colours: the teeth take the photo's eye whites (sclera) as their white, a little darker, so
  they carry the photo's white balance and exposure; gum, tongue, cavity and the dark line of
  barely parted lips come from the lips' own colour, darkened. A portrait whose sclera cannot
  be read (closed eyes, a drawing) takes the skin's hue, lightened;
* the photo's grain (noise sigma) and sharpness (blur sigma), measured on the face;
* a texture of both rows of teeth in the mouth's own coordinates: per-tooth rounding, darker
  gaps between teeth, a translucent incisal edge, a scalloped gum line, receding into shadow
  toward the corners, with the photo's grain and blur applied.

Per pixel (``paint``, and its twin in ``export/renderer_graph.py``): the upper row hangs from
the maxilla (it moves with the head: its edge is placed from the nose), the lower row rides on
the jaw (placed from the chin) and shows only as the jaw drops; behind them the cavity darkens
toward the back and the tongue rises at wide openings; the upper lip shades the teeth below it.
Below about SLIGHT_EW eye widths the opening shows only a dark lip line; the teeth fade in as it
grows.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from spacelive.face.landmarks import (
    EYES,
    LOWER_INNER_LIP,
    LOWER_OUTER_LIP,
    UPPER_INNER_LIP,
    UPPER_OUTER_LIP,
)

TEXTURE_ROWS, TEXTURE_COLS = 64, 192
TEXTURE_DEPTH = 0.7
"""The texture's rows span this many mouth half-widths from the incisal edge into the gum."""
TEXTURE_LEAD = 10
"""Rows of empty texture before the incisal edge, so that sampling beyond the edge (the
texture's first row, replicated) is clear even after the photo's blur."""
GUM = (0.12, 0.05)
"""How much gum each row (upper, lower) shows beyond its crowns before the lip would cover it,
in half-widths; beyond that the row is clear."""
LOWER_SHOW = 0.2
"""The lower lip falls further than the jaw: the lower incisal edge rises above the jaw's
place by this share of the jaw's drop, so the lower row shows as the jaw drops."""
SLIGHT_EW, TEETH_EW = 0.04, 0.12
"""Teeth fade in between these openings (eye widths); below SLIGHT_EW a dark lip line only."""
TONGUE_EW = (0.25, 0.5)
"""The tongue rises into view between these openings (eye widths)."""
TEETH_BELOW_LIP = 0.06
"""The upper incisal edge below the upper lip of a closed mouth, in mouth half-widths."""
OVERBITE = 0.08
"""The lower incisal edge above the upper one with the jaw closed, in mouth half-widths."""
ARCH = (0.14, 0.08)
"""How far the upper and lower incisal edges curve away from the opening toward the corners
(u = +-1), in half-widths: the smile line."""
LIP_SHADOW = (0.45, 0.06)
"""The upper lip's shadow on what is below it: strength, and reach in half-widths."""
EDGE_PX = 1.2
"""The interior's alpha rises over this many pixels inside the inner-lip contour."""
NOSE, CHIN = 2, 152
_UPPER_TEETH = np.array([0.0, 0.17, 0.33, 0.47, 0.59, 0.70, 0.80, 0.9])
_LOWER_TEETH = np.array([0.0, 0.12, 0.25, 0.38, 0.5, 0.61, 0.71, 0.8])
_UPPER_CROWNS = np.array([0.34, 0.29, 0.33, 0.26, 0.24, 0.2, 0.18])
_LOWER_CROWNS = np.array([0.24, 0.22, 0.25, 0.2, 0.18, 0.16, 0.14])


@dataclass(frozen=True, slots=True)
class MouthLook:
    """What one portrait's mouth interior is painted with."""

    texture: np.ndarray  # (2, TEXTURE_ROWS, TEXTURE_COLS, 4) float32 RGBA (0-255, alpha 0-1):
    # upper and lower row; columns u in [-1, 1], rows from TEXTURE_LEAD rows before the
    # incisal edge to TEXTURE_DEPTH half-widths beyond it, into the gum
    colours: np.ndarray  # (3, 3) float32 RGB: cavity, tongue, lip line
    maxilla: float  # the upper incisal edge below the nose, px along the mouth's v axis
    jaw: float  # the lower incisal edge above the chin, px along the mouth's v axis
    eye_width: float  # px
    grain: float  # noise sigma, 8-bit levels
    blur: float  # Gaussian sigma, px


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB (0-255) -> (..., 3) float32 CIE Lab (D65): L* 0-100, a*, b* signed."""
    flat = np.asarray(rgb, np.float32).reshape(-1, 1, 3) / 255.0
    return cv2.cvtColor(np.clip(flat, 0, 1), cv2.COLOR_RGB2Lab).reshape(np.shape(rgb))


def _rgb(lab: np.ndarray) -> np.ndarray:
    flat = np.asarray(lab, np.float32).reshape(-1, 1, 3)
    return (np.clip(cv2.cvtColor(flat, cv2.COLOR_Lab2RGB), 0, 1) * 255).reshape(np.shape(lab))


def polygon_mask(shape, polygon: np.ndarray) -> np.ndarray:
    """(H, W) uint8, 255 inside the polygon ((n, >=2) pixels, drawn at subpixel precision)."""
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(polygon[:, :2] * 4).astype(np.int32)], 255, shift=2)
    return mask


def sclera_lab(image: np.ndarray, kp: np.ndarray) -> np.ndarray | None:
    """(3,) Lab of the eye whites: inside each eye opening, outside the iris (with a margin),
    the brighter half. None where the eyes show too little of them, or nothing light and
    nearly neutral (L* >= 35, chroma <= 30) that could be an eye white."""
    mask = np.zeros(image.shape[:2], np.uint8)
    for _, upper, lower, iris in EYES:
        mask |= polygon_mask(image.shape, np.concatenate([kp[upper], kp[lower[::-1]]]))
        radius = np.linalg.norm(kp[iris[1:], :2] - kp[iris[0], :2], axis=1).mean()
        centre = tuple(int(c) for c in np.round(kp[iris[0], :2]))
        cv2.circle(mask, centre, int(np.ceil(radius * 1.2)), 0, -1)
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8))
    lab = to_lab(image[mask > 0])
    if len(lab) < 12:
        return None
    bright = lab[lab[:, 0] >= np.median(lab[:, 0])].mean(axis=0)
    if bright[0] < 35 or np.hypot(bright[1], bright[2]) > 30:
        return None
    return bright


def _median_lab(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.median(to_lab(image[mask > 0]), axis=0)


def _grain_and_blur(image: np.ndarray, kp: np.ndarray) -> tuple[float, float]:
    """The photo's noise sigma (Immerkaer's Laplacian estimator on the face) and blur sigma
    (from how much one more 1 px Gaussian lowers its strongest gradients)."""
    x0, y0 = np.maximum(kp[:, :2].min(axis=0).astype(int), 0)
    x1, y1 = kp[:, :2].max(axis=0).astype(int) + 1
    grey = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float32)
    if min(grey.shape) < 16:
        return 0.0, 0.5
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    response = np.abs(cv2.filter2D(grey, -1, kernel))[1:-1, 1:-1]
    # The median over the face, not the mean: edges are not noise.
    grain = float(np.sqrt(np.pi / 2) / 6 * np.median(response) * 1.4826 / 1.1926)

    def strongest(g: np.ndarray) -> float:
        gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
        return float(np.percentile(np.hypot(gx, gy), 99))

    ratio = strongest(grey) / max(strongest(cv2.GaussianBlur(grey, (0, 0), 1.0)), 1e-6)
    blur = 1.0 / np.sqrt(max(ratio**2 - 1.0, 1e-3))
    return float(np.clip(grain, 0.0, 12.0)), float(np.clip(blur, 0.4, 3.0))


def eye_width(mesh: np.ndarray) -> float:
    """Mean corner-to-corner width of the two eyes, in the mesh's pixels."""
    return float(np.mean([np.linalg.norm(mesh[u[0], :2] - mesh[u[-1], :2]) for _, u, _, _ in EYES]))


def analyse(image: np.ndarray, kp: np.ndarray, mouth_half: float, v_of) -> MouthLook:
    """image: (512, 512, 3) uint8; kp: (478, 3) pixels; mouth_half: the mouth's half-width
    (px); v_of(points) -> their v (px) in the mouth's frame."""
    lips = polygon_mask(
        image.shape, np.concatenate([kp[UPPER_OUTER_LIP], kp[LOWER_OUTER_LIP[::-1]]])
    )
    lips &= ~cv2.dilate(
        polygon_mask(image.shape, np.concatenate([kp[UPPER_INNER_LIP], kp[LOWER_INNER_LIP[::-1]]])),
        np.ones((3, 3), np.uint8),
    )
    lip = _median_lab(image, lips) if lips.any() else np.array([50.0, 25.0, 12.0])
    cheeks = np.zeros(image.shape[:2], np.uint8)
    for point in (50, 280, 118, 347):
        cv2.circle(cheeks, tuple(int(c) for c in np.round(kp[point, :2])), 5, 255, -1)
    skin = _median_lab(image, cheeks)
    sclera = sclera_lab(image, kp)
    if sclera is None:  # the skin's hue under the same light, lightened toward white
        sclera = np.array([min(skin[0] + 20.0, 85.0), 0.45 * skin[1], 0.4 * skin[2]])
    teeth = np.array([sclera[0] - 4.0, sclera[1] - 1.0, sclera[2] + 2.0])
    gum = np.array([lip[0] * 0.85, lip[1] * 1.05, lip[2]])
    colours = _rgb(
        np.array(
            [
                [lip[0] * 0.22, lip[1] * 0.6, lip[2] * 0.4],  # cavity
                [lip[0] * 0.72, lip[1] * 0.95, lip[2] * 0.8],  # tongue
                [lip[0] * 0.5, lip[1] * 0.8, lip[2] * 0.7],  # lip line
            ],
            np.float32,
        )
    )
    grain, blur = _grain_and_blur(image, kp)
    texture = _teeth_texture(_rgb(teeth), _rgb(gum), colours[0], mouth_half, grain, blur)
    upper_lip, lower_lip = v_of(kp[[13, 14]])
    upper_edge = upper_lip + TEETH_BELOW_LIP * mouth_half
    # The lower row behind the upper one with the jaw closed; an open photo's jaw is dropped,
    # and its lower teeth sit just behind its lower lip.
    lower_edge = max(upper_edge - OVERBITE * mouth_half, lower_lip - 0.1 * mouth_half)
    nose, chin = v_of(kp[[NOSE, CHIN]])
    return MouthLook(
        texture=texture,
        colours=colours.astype(np.float32),
        maxilla=float(upper_edge - nose),
        jaw=float(chin - lower_edge),
        eye_width=eye_width(kp),
        grain=grain,
        blur=blur,
    )


def _teeth_texture(teeth_rgb, gum_rgb, cavity_rgb, half, grain, blur) -> np.ndarray:
    """(2, TEXTURE_ROWS, TEXTURE_COLS, 4) RGBA rows of teeth (see ``MouthLook.texture``)."""
    u = np.linspace(-1.0, 1.0, TEXTURE_COLS)
    step = TEXTURE_DEPTH / (TEXTURE_ROWS - 1 - TEXTURE_LEAD)
    s = (np.arange(TEXTURE_ROWS) - TEXTURE_LEAD) * step  # half-widths beyond the edge
    rows = []
    rng = np.random.default_rng(0)
    for edges, crowns, gum_band in (
        (_UPPER_TEETH, _UPPER_CROWNS, GUM[0]),
        (_LOWER_TEETH, _LOWER_CROWNS, GUM[1]),
    ):
        au = np.abs(u)
        place = np.interp(au, edges, np.arange(len(edges), dtype=np.float64))
        tooth = np.minimum(place.astype(int), len(crowns) - 1)
        within = place - tooth  # 0..1 across each tooth
        across = (2 * within - 1) ** 2  # 0 at a tooth's centre, 1 at its sides
        crown = crowns[tooth] * (0.82 + 0.18 * (1 - across))  # the gum arches over each tooth
        notch = 0.02 * across**3  # rounded incisal corners
        ss = s[:, None]
        in_crown = (ss >= notch) & (ss < crown) & (au < edges[-1])[None]
        shade = (1 - 0.12 * across) * (1 - 0.45 * np.clip(au / edges[-1], 0, 1) ** 1.6)
        shade = shade * np.where(across > 0.88, 0.8, 1.0)  # the gaps between teeth
        shade = shade * (1 + rng.uniform(-0.05, 0.05, len(crowns)))[tooth]  # no two alike
        depth_shade = 1 - 0.12 * np.clip(ss / np.maximum(crown, 1e-3), 0, 1)
        translucent = np.clip(1 - (ss - notch) / 0.035, 0, 1) * 0.3  # the incisal edge
        rgb = teeth_rgb * (shade * depth_shade)[..., None]
        rgb = rgb + translucent[..., None] * (cavity_rgb * 1.6 - rgb)
        gum_shade = (1 - 0.4 * np.clip(au / edges[-1], 0, 1) ** 1.6) * (
            0.9 - 0.15 * np.clip((ss - crown) / gum_band, 0, 1)
        )
        rgb = np.where(in_crown[..., None], rgb, gum_rgb * gum_shade[..., None])
        alpha = (ss >= notch) & (ss < crown + gum_band) & (au < edges[-1] + 0.05)[None]
        alpha = alpha.astype(np.float64)
        rgb = rgb + rng.normal(0.0, grain, rgb.shape)
        rows.append(np.concatenate([rgb, alpha[..., None]], axis=-1))
    texture = np.array(rows, np.float32)
    # The photo's blur, in texels (rows and columns have their own pixel sizes), on colours
    # premultiplied by alpha so that clear texels do not darken the edges.
    px_row, px_col = step * half, 2 * half / (TEXTURE_COLS - 1)
    sigma_x = float(np.clip(blur / px_col, 0.3, TEXTURE_LEAD / 3))
    sigma_y = float(np.clip(blur / px_row, 0.3, TEXTURE_LEAD / 3))
    for i in range(2):
        texture[i, ..., :3] *= texture[i, ..., 3:]
        texture[i] = cv2.GaussianBlur(
            texture[i], (0, 0), sigma_x, sigmaY=sigma_y, borderType=cv2.BORDER_CONSTANT
        )
        alpha = texture[i, ..., 3:]
        texture[i, ..., :3] /= np.maximum(alpha, 1e-3)
    texture[:, 0, :, 3] = 0.0  # replicated beyond the edge: clear
    return texture


def texel(u: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Texture coordinates (column, row) of u in [-1, 1] and s half-widths beyond the edge."""
    step = TEXTURE_DEPTH / (TEXTURE_ROWS - 1 - TEXTURE_LEAD)
    return (u + 1.0) * ((TEXTURE_COLS - 1) / 2), s / step + TEXTURE_LEAD


def smoothstep(x, lo: float, hi: float):
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def paint(look: MouthLook, geometry: np.ndarray, u, v, from_upper, from_lower, half) -> np.ndarray:
    """(n, 3) float32 colours of mouth-interior pixels.

    geometry: (3,) this frame's upper and lower incisal edges (v, px in the driving mouth's
    frame, at its centre) and its eye width (px); u, v, from_upper, from_lower: (n,) each
    pixel's place in the driving mouth's frame and its distance below the upper inner lip and
    above the lower one (px); half: the driving mouth's half-width (px)."""
    upper_edge, lower_edge, eye_width = geometry
    opening = from_upper + from_lower
    wide = opening / eye_width
    au2 = u * u
    depth = np.clip(np.minimum(from_upper, from_lower) / np.maximum(0.5 * opening, 1.0), 0, 1)
    cavity = look.colours[0] * ((1 - 0.45 * depth) * np.clip(1 - 0.4 * au2, 0.4, 1))[:, None]
    line = smoothstep(wide, 0.0, 0.06)[:, None]
    rgb = look.colours[2] + line * (cavity - look.colours[2])
    # The tongue: its top a little below the middle of the opening, rounded toward the corners.
    tongue_top = from_upper - 0.55 * opening * (1 + 0.6 * au2)
    tongue = np.clip(tongue_top / 2 + 0.5, 0, 1) * smoothstep(wide, *TONGUE_EW)
    tongue_rgb = look.colours[1] * (1 - 0.35 * depth)[:, None]
    rgb += tongue[:, None] * (tongue_rgb - rgb)
    teeth_in = teeth_shown(wide)
    for row, edge, arch, sign in ((1, lower_edge, ARCH[1], 1.0), (0, upper_edge, ARCH[0], -1.0)):
        beyond = sign * (v - (edge + sign * arch * half * au2)) / half
        col, r = texel(u, beyond)
        sample = cv2.remap(
            look.texture[row],
            col.astype(np.float32)[None],
            r.astype(np.float32)[None],
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )[0]
        alpha = (sample[:, 3] * teeth_in)[:, None]
        rgb += alpha * (sample[:, :3] - rgb)
    return (rgb * lip_shadow(from_upper, half)[:, None]).astype(np.float32)


def lip_shadow(from_upper, half):
    """(n,) the upper lip's shadow on what is below it: the factor on its light, by the
    distance below the upper inner lip (px) in a mouth of half-width ``half`` (px)."""
    return 1 - LIP_SHADOW[0] * np.exp(-np.maximum(from_upper, 0) / (LIP_SHADOW[1] * half))


def teeth_shown(opening_ew):
    """How much of the teeth an opening (eye widths) shows: none below SLIGHT_EW, all above
    TEETH_EW."""
    return smoothstep(opening_ew, SLIGHT_EW, TEETH_EW)


def interior_alpha(from_upper, from_lower):
    """Soft alpha of the interior over the warped lips, following the inner-lip contour."""
    return np.clip(np.minimum(from_upper, from_lower) / EDGE_PX + 0.5, 0.0, 1.0)
