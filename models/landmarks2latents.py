"""Landmarks2Latents (appendix A.3): posed landmarks -> the renderer's dense keypoints.

kp_t = LSTM(R_t face_t + T_t, a_t, kp_s, kp_{t-1}), with the S2L landmark encoders, a
source-keypoint MLP (4 layers), a previous-keypoint MLP (8 layers), a 2-layer LSTM with a
learned initial state, and FiLM emotion on the audio, the landmarks and the source
keypoints. The head predicts the offset from the source keypoints.

Posed landmarks are (110, 3) and keypoints (478, 3), both in crop coordinates scaled to
[-1, 1] (x right, y down, z toward the viewer at the same scale).
"""

import torch
from torch import nn

from spacelive.landmarks import EMOTIONS, MESH_POINTS
from spacelive.models.layers import MLP, FiLM, lstm_step
from spacelive.models.speech2landmarks import InitialState, LandmarkEncoder
from spacelive.models.widths import Width

LSTM_LAYERS = 2
KP_FEATURES = MESH_POINTS * 3


class Landmarks2Latents(nn.Module):
    def __init__(self, width: Width):
        super().__init__()
        c, h = width.channels, width.lstm
        n_emotions = len(EMOTIONS)
        self.landmarks = LandmarkEncoder(c)
        self.source = MLP(KP_FEATURES, c, depth=4)
        self.previous = MLP(KP_FEATURES, c, depth=8)
        self.film_audio = FiLM(n_emotions, c)
        self.film_landmarks = FiLM(n_emotions, self.landmarks.out_features)
        self.film_source = FiLM(n_emotions, c)
        self.lstm = nn.LSTM(3 * c + self.landmarks.out_features, h, LSTM_LAYERS, batch_first=True)
        self.initial_state = InitialState(self.landmarks.out_features + 2 * c, c, h, LSTM_LAYERS)
        self.head = nn.Linear(h, KP_FEATURES)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def _codes(self, audio, landmarks, kp_source, emotion):
        return (
            self.film_audio(audio, emotion),
            self.film_landmarks(self.landmarks(landmarks), emotion),
            self.film_source(self.source(kp_source.flatten(-2)), emotion),
        )

    def forward(
        self,
        audio: torch.Tensor,
        landmarks: torch.Tensor,
        kp_source: torch.Tensor,
        emotion: torch.Tensor,
        teacher: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """audio (B, T, C), posed landmarks (B, T, 110, 3), kp_source (B, 478, 3),
        emotion (B, T, 8), teacher: optional (B, T, 478, 3) -> keypoints (B, T, 478, 3).

        The same arithmetic as stepping ``Landmarks2LatentsStep`` (tested), arranged for
        training: what does not depend on the previous keypoints runs for all frames at once;
        given the teacher's previous keypoints, so does the LSTM."""
        batch, frames = audio.shape[:2]
        source = kp_source[:, None].expand(-1, frames, -1, -1)
        a, lm, src = self._codes(audio, landmarks, source, emotion)
        h, c = self.initial_state(torch.cat([lm[:, 0], a[:, 0], src[:, 0]], dim=-1))
        if teacher is not None:
            previous = torch.cat([kp_source[:, None], teacher[:, :-1]], dim=1)
            x = torch.cat([a, lm, src, self.previous(previous.flatten(-2))], dim=-1)
            out, _ = self.lstm(x, (h, c))
            return source + self.head(out).reshape(batch, frames, MESH_POINTS, 3)
        kp = kp_source
        outputs = []
        for t in range(frames):
            x = torch.cat([a[:, t], lm[:, t], src[:, t], self.previous(kp.flatten(-2))], dim=-1)
            out, h, c = lstm_step(self.lstm, x, h, c)
            kp = kp_source + self.head(out).reshape(batch, MESH_POINTS, 3)
            outputs.append(kp)
        return torch.stack(outputs, dim=1)


class Landmarks2LatentsStep(nn.Module):
    """One frame: (audio (B, C), landmarks (B, 110, 3), kp_source (B, 478, 3), previous
    (B, 478, 3), emotion (B, 8), h, c (2, B, H), first (B,)) -> (kp (B, 478, 3), h, c)."""

    def __init__(self, model: Landmarks2Latents):
        super().__init__()
        self.model = model

    def forward(self, audio, landmarks, kp_source, previous, emotion, h, c, first):
        m = self.model
        a, lm, src = m._codes(audio, landmarks, kp_source, emotion)
        h0, c0 = m.initial_state(torch.cat([lm, a, src], dim=-1))
        w = first[None, :, None]
        h = w * h0 + (1 - w) * h
        c = w * c0 + (1 - w) * c
        x = torch.cat([a, lm, src, m.previous(previous.flatten(-2))], dim=-1)
        out, h, c = lstm_step(m.lstm, x, h, c)
        return kp_source + m.head(out).reshape(-1, MESH_POINTS, 3), h, c
