"""PoseGen (appendix A.2): a conditional VAE over head-pose sequences given audio.

Encoder: 2-layer Bi-LSTM over (audio, pose) -> mu, log-variance of z (64). Decoder: 2-layer
autoregressive LSTM, pose_t = head(LSTM(a_t, z, pose_{t-1})). At inference z ~ N(0, 1). The
head gives the pose itself, not a step from the previous one: summed steps drift over the
minutes of a stream.

Pose is (6,): yaw, pitch, roll (radians) and translation x, y, z, as an offset from the
portrait's own pose.
"""

import math

import torch
from torch import nn

from spacelive.face.landmarks import POSE_DIMS
from spacelive.models.layers import lstm_step
from spacelive.models.widths import Width

LSTM_LAYERS = 2
POSE_SCALE = (180 / math.pi / 4,) * 3 + (100.0,) * 3
"""Inside the model the pose is in units of about its natural spread: 4 degrees for angles,
0.01 crop units for translation; inputs are scaled by this and the head's output divided."""


class PoseGen(nn.Module):
    pose_scale: torch.Tensor  # (6,) buffer: POSE_SCALE

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
        self.register_buffer("pose_scale", torch.tensor(POSE_SCALE))

    def to_pose(self, out: torch.Tensor) -> torch.Tensor:
        return self.head(out) / self.pose_scale

    def encode(self, audio: torch.Tensor, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """audio (B, T, C), pose (B, T, 6) -> mu, logvar (B, z)."""
        out, _ = self.encoder(torch.cat([self.audio_proj(audio), pose * self.pose_scale], dim=-1))
        mu, logvar = self.to_latent(out.mean(dim=1)).chunk(2, dim=-1)
        return mu, logvar

    def posterior(self, audio: torch.Tensor, pose: torch.Tensor):
        """Training: (z drawn from the posterior (B, z), mu, logvar)."""
        mu, logvar = self.encode(audio, pose)
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar), mu, logvar

    def decode(self, audio: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Autoregressive decode: audio (B, T, C), z (B, z) -> pose (B, T, 6).

        The same arithmetic as stepping ``PoseGenStep`` (tested), arranged for training: the
        first layer's input weights apply to the audio and z of every frame in one matmul, so
        that the loop over frames does only what depends on the previous frame."""
        batch, frames = audio.shape[:2]
        hidden = self.decoder.hidden_size
        p = self.audio_proj.out_features
        w = {name: getattr(self.decoder, name) for name, _ in self.decoder.named_parameters()}
        w_ih0: torch.Tensor = w["weight_ih_l0"]
        w_audio, w_z, w_pose = (
            w_ih0[:, :p],
            w_ih0[:, p : p + self.latent],
            w_ih0[:, p + self.latent :],
        )
        constant = (
            self.audio_proj(audio) @ w_audio.T
            + (z @ w_z.T)[:, None]
            + (w["bias_ih_l0"] + w["bias_hh_l0"])
        )  # (B, T, 4H)
        w_layer1 = torch.cat([w["weight_ih_l1"], w["weight_hh_l1"]], dim=1)
        b_layer1 = w["bias_ih_l1"] + w["bias_hh_l1"]
        h0 = c0 = h1 = c1 = audio.new_zeros(batch, hidden)
        pose = audio.new_zeros(batch, POSE_DIMS)
        poses = []
        for t in range(frames):
            gates = constant[:, t] + (pose * self.pose_scale) @ w_pose.T + h0 @ w["weight_hh_l0"].T
            h0, c0 = _cell(gates, c0)
            h1, c1 = _cell(torch.cat([h0, h1], dim=-1) @ w_layer1.T + b_layer1, c1)
            pose = self.to_pose(h1)
            poses.append(pose)
        return torch.stack(poses, dim=1)

    def decode_given(
        self, audio: torch.Tensor, z: torch.Tensor, previous: torch.Tensor
    ) -> torch.Tensor:
        """Decode with the previous poses given, all frames at once: audio (B, T, C), z (B, z),
        previous (B, T, 6) (row t is pose t-1, zero at t = 0) -> pose (B, T, 6). Equals the
        free-running ``decode`` when ``previous`` is its own output shifted by one frame."""
        frames = audio.shape[1]
        x = [self.audio_proj(audio), z[:, None].expand(-1, frames, -1), previous * self.pose_scale]
        out, _ = self.decoder(torch.cat(x, -1))
        return self.to_pose(out)


def _cell(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LSTM cell update from its gate pre-activations (i, f, g, o), as in ``lstm_step``."""
    i, f, g, o = gates.chunk(4, dim=-1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


class PoseGenStep(nn.Module):
    """One frame of the decoder: (audio (B, C), z (B, z), previous pose (B, 6), h, c
    (2, B, P)) -> (pose (B, 6), h, c). A stream starts from zero pose and zero state."""

    def __init__(self, model: PoseGen):
        super().__init__()
        self.model = model

    def forward(self, audio, z, previous, h, c):
        m = self.model
        x = torch.cat([m.audio_proj(audio), z, previous * m.pose_scale], dim=-1)
        out, h, c = lstm_step(m.decoder, x, h, c)
        return m.to_pose(out), h, c
