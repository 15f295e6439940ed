"""The renderer's ONNX twin: the per-pixel work of ``spacelive.render.renderer.WarpRenderer`` as one
graph, for GPU hosts (ONNX Runtime's CUDA or TensorRT providers).

The CPU keeps what is small and irregular: the coarse global flow (a 66 x 66 grid from a
kernel regression over the keypoints) and each feature's frames, contour profiles and rest
test (``WarpRenderer.frame_inputs``, well under a millisecond). The graph does everything that
touches pixels: upsampling the flow, the mouth layer and its painted
interior with teeth, the eye layers with lids and irises, the resampling of the portrait and
the compositing. Where the CPU renderer works in a box around each feature, the graph works on
the whole frame with the same weights, which are zero outside those boxes.

Inputs (batch B; shapes as ``WarpRenderer.frame_inputs`` documents them):
``image``, ``clean`` (B, 512, 512, 3) uint8; ``coarse`` (B, 66, 66, 2); ``mouth_frames``
(B, 2, 5); ``mouth_tables`` (B, 2, 4, 512); ``mouth_moved`` (B, 1); ``lip_edges``
(B, 2, 512); ``teeth`` (B, 4);
``teeth_texture`` (B, 2, 64, 192, 4); ``mouth_colours`` (B, 3, 3); ``eye_frames``
(B, 2, 2, 5); ``eye_tables`` (B, 2, 2, 2, 512); ``irises`` (B, 2, 3, 2); ``eye_moved``,
``iris_moved`` (B, 2). Output ``frame`` (B, 512, 512, 3) uint8.
"""

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from spacelive import FRAME_SIZE
from spacelive.face.head_model import face_model
from spacelive.render import mouth_look as look
from spacelive.render.renderer import (
    _PROFILE_SAMPLES,
    GRID,
    LASH_WIDTH,
    LID_BAND,
    LIP_INSET_PX,
    LOWER_LID_BAND,
    MOUTH_BAND,
    OWN_LOWER_SHOW,
    SEAM_FADE,
    WarpRenderer,
)

INPUTS = (
    "image",
    "clean",
    "coarse",
    "mouth_frames",
    "mouth_tables",
    "mouth_moved",
    "lip_edges",
    "teeth",
    "teeth_texture",
    "mouth_colours",
    "eye_frames",
    "eye_tables",
    "irises",
    "eye_moved",
    "iris_moved",
)


def _local(frame: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
    """frame (B, 5) = (ox, oy, ux, uy, half); x, y (B, H, W) -> u (half-lengths), v (px)."""
    ox, oy, ux, uy, half = (frame[:, i, None, None] for i in range(5))
    rx, ry = x - ox, y - oy
    return (rx * ux + ry * uy) / half, ry * ux - rx * uy


def _pixels(frame: torch.Tensor, u: torch.Tensor, v: torch.Tensor):
    ox, oy, ux, uy, half = (frame[:, i, None, None] for i in range(5))
    along = u * half
    return ox + along * ux - v * uy, oy + along * uy + v * ux


def _profile(tables: torch.Tensor, u: torch.Tensor) -> list[torch.Tensor]:
    """tables (B, n, 512), u (B, H, W) -> n tensors (B, H, W): each contour's v at u."""
    scale = (_PROFILE_SAMPLES - 1) / 2
    index = torch.round((torch.clamp(u, -1.0, 1.0) + 1.0) * scale).long()
    flat = index.reshape(index.shape[0], 1, -1).expand(-1, tables.shape[1], -1)
    values = torch.gather(tables, 2, flat).reshape(tables.shape[0], tables.shape[1], *u.shape[1:])
    return list(values.unbind(1))


def _sample(image: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """image (B, 3, H, W) float; x, y (B, h, w) pixels -> (B, 3, h, w), bilinear, edges
    replicated (cv2.remap with BORDER_REPLICATE)."""
    size = image.shape[-1]
    grid = torch.stack([x, y], dim=-1) * (2.0 / (size - 1)) - 1.0
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _blend(sample: torch.Tensor, weight: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor):
    """sample (B, H, W, 2) += weight * (target - sample)."""
    target = torch.stack([tx, ty], dim=-1)
    return sample + weight[..., None] * (target - sample)


def _smoothstep(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    t = torch.clamp((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


class RendererGraph(nn.Module):
    def forward(
        self,
        image,
        clean,
        coarse,
        mouth_frames,
        mouth_tables,
        mouth_moved,
        lip_edges,
        teeth,
        teeth_texture,
        mouth_colours,
        eye_frames,
        eye_tables,
        irises,
        eye_moved,
        iris_moved,
    ):
        batch = image.shape[0]
        source = image.permute(0, 3, 1, 2).float()
        clean_source = clean.permute(0, 3, 1, 2).float()
        sample = self._global_map(coarse)  # (B, 512, 512, 2)
        # Pixel grids from the input's shape: traced as Range ops, not megabyte constants.
        full = torch.arange(image.shape[1]).float()
        y_full, x_full = torch.meshgrid(full, full, indexing="ij")
        x_full, y_full = x_full.expand(batch, -1, -1), y_full.expand(batch, -1, -1)

        sample, mouth_rgb, mouth_alpha = self._mouth(
            sample,
            source,
            x_full,
            y_full,
            mouth_frames,
            mouth_tables,
            mouth_moved,
            lip_edges,
            teeth,
            teeth_texture,
            mouth_colours,
        )
        paints = [(mouth_rgb, mouth_alpha)]
        for e in range(2):
            sample, rgb, alpha = self._eye(
                sample,
                source,
                clean_source,
                x_full,
                y_full,
                eye_frames[:, e],
                eye_tables[:, e],
                irises[:, e],
                eye_moved[:, e],
                iris_moved[:, e],
            )
            paints.append((rgb, alpha))
        frame = _sample(source, sample[..., 0], sample[..., 1])
        for rgb, alpha in paints:
            frame = frame + alpha[:, None] * (rgb - frame)
        frame = torch.clamp(torch.round(frame), 0.0, 255.0)
        return frame.permute(0, 2, 3, 1).to(torch.uint8)

    @staticmethod
    def _global_map(coarse: torch.Tensor) -> torch.Tensor:
        """(B, GRID + 2, GRID + 2, 2) -> (B, 512, 512, 2), as ``WarpRenderer._upsample_flow``."""
        cell = FRAME_SIZE // GRID
        full = F.interpolate(
            coarse.permute(0, 3, 1, 2), scale_factor=cell, mode="bilinear", align_corners=False
        )
        return full[:, :, cell:-cell, cell:-cell].permute(0, 2, 3, 1)

    def _mouth(self, sample, source, x, y, frames, tables, moved, edges, teeth, texture, colours):
        f_src, f_drv = frames[:, 0], frames[:, 1]
        half_px = f_drv[:, 4, None, None]
        band = MOUTH_BAND * half_px
        u, v = _local(f_drv, x, y)
        ou_d, iu_d, il_d, ol_d = _profile(tables[:, 1], u)
        ou_s, iu_s, il_s, ol_s = _profile(tables[:, 0], u)
        iu_d = torch.maximum(iu_d, ou_d + 1)
        il_d = torch.maximum(il_d, iu_d)
        ol_d = torch.maximum(ol_d, il_d + 1)
        top = torch.minimum(ou_d, ou_s) - band
        bottom = torch.maximum(ol_d, ol_s) + band
        edge_up, edge_down = _profile(edges, u)
        parting = LIP_INSET_PX * torch.clamp((il_d - iu_d) / 2.0, 0.0, 1.0)
        open_source = torch.clamp((il_s - iu_s) / 4.0, 0.0, 1.0)
        upper_edge = iu_s - torch.maximum(parting, open_source * (LIP_INSET_PX + edge_up))
        lower_edge = il_s + torch.maximum(parting, open_source * (LIP_INSET_PX + edge_down))
        v_src = bottom - (bottom - v) * (bottom - ol_s) / torch.clamp(bottom - ol_d, min=1e-3)
        lower_lip = lower_edge + (v - il_d) * (ol_s - lower_edge) / (ol_d - il_d)
        v_src = torch.where(v < ol_d, lower_lip, v_src)
        v_src = torch.where(v < il_d, iu_s, v_src)
        upper_lip = ou_s + (v - ou_d) * (upper_edge - ou_s) / (iu_d - ou_d)
        v_src = torch.where(v < iu_d, upper_lip, v_src)
        above = top + (v - top) * (ou_s - top) / torch.clamp(ou_d - top, min=1e-3)
        v_src = torch.where(v < ou_d, above, v_src)
        tx, ty = _pixels(f_src, u, v_src)
        inside_v = torch.clamp(
            torch.minimum((v - top) / (ou_d - top), (bottom - v) / (bottom - ol_d)), 0.0, 1.0
        )
        inside_u = torch.clamp((1.22 - u.abs()) / 0.22, 0.0, 1.0)
        from_upper, from_lower = v - iu_d, il_d - v
        gate = moved[:, :1, None]
        sample = _blend(sample, inside_v * inside_u * gate, tx, ty)

        alpha = torch.clamp(torch.minimum(from_upper, from_lower) / look.EDGE_PX + 0.5, 0.0, 1.0)
        alpha = alpha * torch.clamp((1.0 - u.abs()) / SEAM_FADE, 0.0, 1.0) * gate
        rgb = self._interior(texture, colours, teeth, u, v, from_upper, from_lower, half_px)
        # The portrait's own teeth, where its opening shows them at the same depth.
        scale = f_src[:, 4, None, None] / half_px
        depth_up, depth_down = iu_s + from_upper * scale, il_s - from_lower * scale
        use_upper = (depth_up < il_s - 1.0) & (from_upper <= from_lower)
        use_lower = (depth_down > iu_s + 1.0) & ~use_upper & (from_lower < from_upper)
        use = (use_upper | use_lower) & (teeth[:, 3, None, None] > 0.5)
        sx, sy = _pixels(f_src, u, torch.where(use_upper, depth_up, depth_down))
        opening = from_upper + from_lower
        shown = _smoothstep(opening / teeth[:, 2, None, None], look.SLIGHT_EW, look.TEETH_EW)
        share = opening * scale / torch.clamp(il_s - iu_s, min=1.0)
        lower_shown = _smoothstep(share, *OWN_LOWER_SHOW)
        shown = shown * torch.where(use_upper, torch.ones_like(share), lower_shown)
        rgb = torch.where(use[:, None], rgb + shown[:, None] * (_sample(source, sx, sy) - rgb), rgb)
        return sample, rgb, alpha

    @staticmethod
    def _interior(texture, colours, geometry, u, v, from_upper, from_lower, half):
        """(B, 3, H, W) mouth-interior colours, as ``mouth_look.paint``."""
        upper_edge, lower_edge, eye_width = (geometry[:, i, None, None] for i in range(3))
        opening = from_upper + from_lower
        wide = opening / eye_width
        au2 = u * u
        depth = torch.clamp(
            torch.minimum(from_upper, from_lower) / torch.clamp(0.5 * opening, min=1.0), 0.0, 1.0
        )
        cavity_rgb, tongue_rgb, line_rgb = (colours[:, i, :, None, None] for i in range(3))
        corner = torch.clamp(1 - 0.4 * au2, 0.4, 1.0)
        cavity = cavity_rgb * ((1 - 0.45 * depth) * corner)[:, None]
        rgb = line_rgb + _smoothstep(wide, 0.0, 0.06)[:, None] * (cavity - line_rgb)
        tongue_top = from_upper - 0.55 * opening * (1 + 0.6 * au2)
        tongue = torch.clamp(tongue_top / 2 + 0.5, 0.0, 1.0) * _smoothstep(wide, *look.TONGUE_EW)
        rgb = rgb + tongue[:, None] * (tongue_rgb * (1 - 0.35 * depth)[:, None] - rgb)
        teeth_in = _smoothstep(wide, look.SLIGHT_EW, look.TEETH_EW)
        step = look.TEXTURE_DEPTH / (look.TEXTURE_ROWS - 1 - look.TEXTURE_LEAD)
        rows = (
            (1, lower_edge, look.ARCH[1], 1.0),
            (0, upper_edge, look.ARCH[0], -1.0),
        )
        for row, edge, arch, sign in rows:
            beyond = sign * (v - (edge + sign * arch * half * au2)) / half
            # Texel coordinates as ``mouth_look.texel``, normalized for grid_sample.
            gx = u
            gy = (beyond / step + look.TEXTURE_LEAD) * (2.0 / (look.TEXTURE_ROWS - 1)) - 1.0
            sample = F.grid_sample(
                texture[:, row].permute(0, 3, 1, 2),
                torch.stack([gx, gy], dim=-1),
                mode="bilinear",
                padding_mode="border",
                align_corners=True,
            )
            alpha = (sample[:, 3] * teeth_in)[:, None]
            rgb = rgb + alpha * (sample[:, :3] - rgb)
        shadow = 1 - look.LIP_SHADOW[0] * torch.exp(
            -torch.clamp(from_upper, min=0.0) / (look.LIP_SHADOW[1] * half)
        )
        return rgb * shadow[:, None]

    @staticmethod
    def _eye(sample, source, clean, x, y, frames, tables, iris, moved, iris_moved):
        f_src, f_drv = frames[:, 0], frames[:, 1]
        half_px = f_drv[:, 4, None, None]
        lid_band, lower_band = LID_BAND * half_px, LOWER_LID_BAND * half_px
        u, v = _local(f_drv, x, y)
        up_d, lo_d = _profile(tables[:, 1], u)
        up_s, lo_s = _profile(tables[:, 0], u)
        lo_d = torch.maximum(lo_d, up_d)
        top = torch.minimum(up_d, up_s) - lid_band
        bottom = torch.maximum(lo_d, lo_s) + lower_band
        closing = up_d > up_s
        lash = torch.where(closing, iris[:, 2, 1, None, None], LASH_WIDTH * half_px)
        v_src = bottom - (bottom - v) * (bottom - lo_s) / torch.clamp(bottom - lo_d, min=1e-3)
        ball = torch.minimum(
            torch.maximum(v, up_s + 0.5), torch.maximum(lo_s - 0.5, up_s + 0.5)
        )  # np.clip(v, low, high): the eyeball keeps its place in the eye's frame
        v_src = torch.where(v <= lo_d, ball, v_src)
        v_src = torch.where(v < up_d, v - up_d + up_s - 1, v_src)
        stretch = (up_s - 1 - lash - top) / torch.clamp(up_d - lash - top, min=1e-3)
        skin = torch.where(closing, torch.minimum(v, up_s - 1 - lash), top + (v - top) * stretch)
        v_src = torch.where(v < up_d - lash, skin, v_src)
        tx, ty = _pixels(f_src, u, v_src)
        inside_v = torch.clamp(
            torch.minimum((v - top) / lid_band, (bottom - v) / lower_band), 0.0, 1.0
        )
        inside_u = torch.clamp((1.15 - u.abs()) / 0.15, 0.0, 1.0)
        gate = moved[:, None, None]
        sample = _blend(sample, inside_v * inside_u * gate, tx, ty)

        from_upper, from_lower = v - up_d, lo_d - v
        opening = torch.clamp(torch.minimum(from_upper, from_lower) + 0.5, 0.0, 1.0)
        opening = opening * (u.abs() <= 1).float() * iris_moved[:, None, None]
        centre_s, centre_d = iris[:, 0], iris[:, 1]
        scale = half_px / f_src[:, 4, None, None]
        radius = iris[:, 2, 0, None, None] * scale
        distance = torch.sqrt(
            (x - centre_d[:, 0, None, None]) ** 2 + (y - centre_d[:, 1, None, None]) ** 2
        )
        iris_alpha = torch.clamp(radius + 0.5 - distance, 0.0, 1.0)
        cu_d, cv_d = _local(f_drv, centre_d[:, 0, None, None], centre_d[:, 1, None, None])
        cu_s, cv_s = _local(f_src, centre_s[:, 0, None, None], centre_s[:, 1, None, None])
        eyeball = _sample(clean, tx, ty)
        ix, iy = _pixels(f_src, u - cu_d + cu_s, v - cv_d + cv_s)
        rgb = eyeball + iris_alpha[:, None] * (_sample(source, ix, iy) - eyeball)
        return sample, rgb, opening


def export_renderer(path: Path, opset: int = 17) -> Path:
    """Write the twin's ONNX graph. It holds no weights, only a few constants."""
    renderer = WarpRenderer()
    image = np.zeros((FRAME_SIZE, FRAME_SIZE, 3), np.uint8)
    centred = face_model() - face_model().mean(axis=0)  # any plausible face traces the graph
    kp = (centred * (230 / np.ptp(centred[:, :2], axis=0).max()) + [256, 270, 0]).astype(np.float32)
    inputs = renderer.frame_inputs(renderer.prepare(image, kp), kp * 1.01)
    example = (
        torch.from_numpy(image[None]),
        torch.from_numpy(image[None]),
        *(torch.from_numpy(inputs[name]) for name in INPUTS[2:]),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        RendererGraph().eval(),
        example,
        str(path),
        input_names=list(INPUTS),
        output_names=["frame"],
        dynamic_axes={name: {0: "batch"} for name in (*INPUTS, "frame")},
        opset_version=opset,
        do_constant_folding=False,  # keep the pixel grids as Range ops, not 1 MB constants
        dynamo=False,
    )
    return path
