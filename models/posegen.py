"""PoseGen (appendix A.2): a conditional VAE over head-pose sequences given audio.

Encoder: 2-layer Bi-LSTM over (audio, pose) -> mu, log-variance of z (64). Decoder: 2-layer
autoregressive LSTM, pose_t = LSTM(a_t, z, pose_{t-1}). At inference z ~ N(0, 1).

Pose is (6,): yaw, pitch, roll (radians) and translation x, y, z, as an offset from the
portrait's own pose.
"""

import torch
from torch import nn

from spacelive.landmarks import POSE_DIMS
from spacelive.models.layers import lstm_step
from spacelive.models.widths import Width

LSTM_LAYERS = 2


class PoseGen(nn.Module):
    def __init__(self, width: Width):
        super().__init__()
        p, z = width.pose_lstm, width.pose_latent
        self.latent = z
        self.audio_proj = nn.Linear(width.channels, p)
        self.encoder = nn.LSTM(p + POSE_DIMS, p, LSTM_LAYERS, batch_first=True, bidirectional=True)
        self.to_latent = nn.Linear(2 * p, 2 * z)
        self.decoder = nn.LSTM(p + z + POSE_DIMS, p, LSTM_LAYERS, batch_first=True)
        self.head = nn.Linear(p, POSE_DIMS)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def encode(self, audio: torch.Tensor, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """audio (B, T, C), pose (B, T, 6) -> mu, logvar (B, z)."""
        out, _ = self.encoder(torch.cat([self.audio_proj(audio), pose], dim=-1))
        return self.to_latent(out.mean(dim=1)).chunk(2, dim=-1)

    def decode(self, audio: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Autoregressive decode: audio (B, T, C), z (B, z) -> pose (B, T, 6)."""
        batch, frames = audio.shape[:2]
        hidden = self.decoder.hidden_size
        h = audio.new_zeros(LSTM_LAYERS, batch, hidden)
        c = audio.new_zeros(LSTM_LAYERS, batch, hidden)
        pose = audio.new_zeros(batch, POSE_DIMS)
        projected = self.audio_proj(audio)
        poses = []
        for t in range(frames):
            out, h, c = lstm_step(self.decoder, torch.cat([projected[:, t], z, pose], -1), h, c)
            pose = pose + self.head(out)
            poses.append(pose)
        return torch.stack(poses, dim=1)

    def forward(self, audio: torch.Tensor, pose: torch.Tensor):
        """Training pass: returns (reconstructed pose, mu, logvar)."""
        mu, logvar = self.encode(audio, pose)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(audio, z), mu, logvar


class PoseGenStep(nn.Module):
    """One frame of the decoder: (audio (B, C), z (B, z), previous pose (B, 6), h, c
    (2, B, P)) -> (pose (B, 6), h, c). A stream starts from zero pose and zero state."""

    def __init__(self, model: PoseGen):
        super().__init__()
        self.model = model

    def forward(self, audio, z, previous, h, c):
        m = self.model
        x = torch.cat([m.audio_proj(audio), z, previous], dim=-1)
        out, h, c = lstm_step(m.decoder, x, h, c)
        return previous + m.head(out), h, c
