"""The audio encoder: 12 Conv1d layers over MFCC frames (appendix A.1).

The first 4 layers are symmetric (kernel 3, one frame of lookahead each); the last 8 are
causal (kernel 5). Frame k's feature therefore needs MFCC frames up to k + 4: the
encoder's LOOKAHEAD.
"""

import torch
from torch import nn
from torch.nn import functional as F

from spacelive.models.layers import LEAKY_SLOPE

N_MFCC = 40
SYMMETRIC_LAYERS, SYMMETRIC_KERNEL = 4, 3
CAUSAL_LAYERS, CAUSAL_KERNEL = 8, 5
LOOKAHEAD = SYMMETRIC_LAYERS * (SYMMETRIC_KERNEL // 2)  # 4 frames


class ConvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, bias=False)
        self.norm = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C_in, T + kernel - 1), already padded -> (B, C_out, T)."""
        return F.leaky_relu(self.norm(self.conv(x)), LEAKY_SLOPE)


class AudioEncoder(nn.Module):
    """MFCC (B, T, 40) -> audio features (B, T, channels)."""

    mfcc_mean: torch.Tensor
    mfcc_std: torch.Tensor

    def __init__(self, channels: int, n_mfcc: int = N_MFCC):
        super().__init__()
        self.channels = channels
        layers = range(SYMMETRIC_LAYERS + CAUSAL_LAYERS)
        self.kernels = [SYMMETRIC_KERNEL if i < SYMMETRIC_LAYERS else CAUSAL_KERNEL for i in layers]
        self.in_channels = [n_mfcc if i == 0 else channels for i in layers]
        self.blocks = nn.ModuleList(
            ConvBlock(c_in, channels, k)
            for c_in, k in zip(self.in_channels, self.kernels, strict=True)
        )
        # MFCC standardization, fitted on the training corpus and part of the exported graph.
        self.register_buffer("mfcc_mean", torch.zeros(n_mfcc))
        self.register_buffer("mfcc_std", torch.ones(n_mfcc))

    def standardize(self, mfcc: torch.Tensor) -> torch.Tensor:
        return (mfcc - self.mfcc_mean) / self.mfcc_std

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        x = self.standardize(mfcc).transpose(1, 2)
        for i, (block, kernel) in enumerate(zip(self.blocks, self.kernels, strict=True)):
            pad = (kernel // 2, kernel // 2) if i < SYMMETRIC_LAYERS else (kernel - 1, 0)
            x = block(F.pad(x, pad))
        return x.transpose(1, 2)

    def cache_shapes(self, batch: int) -> list[tuple[int, int, int]]:
        """Per-layer cache shapes: the last kernel - 1 inputs each layer has seen."""
        return [(batch, c, k - 1) for c, k in zip(self.in_channels, self.kernels, strict=True)]


class AudioEncoderStep(nn.Module):
    """One MFCC frame in, the feature of the frame LOOKAHEAD earlier out.

    Inputs: mfcc (B, 40) for frame n, frame_index (B,) int64 = n, frame_count (B,) int64
    (the number of MFCC frames in the stream, or a huge value while it is still open) and
    12 caches (B, C_in, kernel - 1). Outputs: feature (B, channels) for frame n - 4 and the
    12 new caches.

    Every layer's output is zeroed at positions outside [0, frame_count), which is what the
    zero padding of the full-sequence ``forward`` sees; stepping frames 0 .. T + 3 (with zero
    MFCC past the end) gives exactly ``forward``'s T features.
    """

    def __init__(self, encoder: AudioEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, mfcc, frame_index, frame_count, *caches):
        # Zero MFCC past the end stands for padding: it must stay zero after standardizing.
        padding = (frame_index >= frame_count).to(mfcc.dtype)[:, None]
        x = (self.encoder.standardize(mfcc) * (1 - padding)).unsqueeze(-1)  # (B, C, 1)
        new_caches = []
        for i, (block, cache) in enumerate(zip(self.encoder.blocks, caches, strict=True)):
            window = torch.cat([cache, x], dim=-1)
            new_caches.append(window[:, :, 1:])
            delay = min(i + 1, SYMMETRIC_LAYERS)
            position = frame_index - delay
            valid = ((position >= 0) & (position < frame_count)).to(x.dtype)
            x = block(window) * valid[:, None, None]
        return (x.squeeze(-1), *new_caches)
