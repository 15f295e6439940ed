"""Speech2Landmarks (appendix A.1): audio features -> normalized frontal landmarks per frame.

face_t = LSTM(face_{t-1}, a_t), with a 68-point face MLP (8 layers), an eye MLP (4 layers),
a 2-layer LSTM, a learned initial state h0 = MLP(face0, a0) (4 layers) and FiLM emotion
conditioning on the audio features and on the initial landmarks. The head predicts the
offset from the initial (identity) landmarks.

Landmarks are (110, 3): 68 iBUG points then 42 eye points, normalized (ears 2 apart).
"""

import torch
from torch import nn

from spacelive.face.landmarks import EMOTIONS, EYE_POINTS, FACE_POINTS, SPARSE_POINTS
from spacelive.models.layers import MLP, FiLM, lstm_step
from spacelive.models.widths import Width

LSTM_LAYERS = 2


class LandmarkEncoder(nn.Module):
    """(B, 110, 3) landmarks -> (B, 2 * channels): face MLP (8 layers) + eye MLP (4 layers)."""

    def __init__(self, channels: int):
        super().__init__()
        self.face = MLP(FACE_POINTS * 3, channels, depth=8)
        self.eyes = MLP(EYE_POINTS * 3, channels, depth=4)
        self.out_features = 2 * channels

    def forward(self, landmarks: torch.Tensor) -> torch.Tensor:
        lead = landmarks.shape[:-2]
        face = landmarks[..., :FACE_POINTS, :].reshape(*lead, FACE_POINTS * 3)
        eyes = landmarks[..., FACE_POINTS:, :].reshape(*lead, EYE_POINTS * 3)
        return torch.cat([self.face(face), self.eyes(eyes)], dim=-1)


class InitialState(nn.Module):
    """h0, c0 = MLP(inputs) (4 layers): (B, F) -> two (layers, B, hidden)."""

    def __init__(self, in_features: int, channels: int, hidden: int, layers: int):
        super().__init__()
        self.mlp = MLP(in_features, channels, depth=4)
        self.out = nn.Linear(channels, 2 * layers * hidden)
        self.layers, self.hidden = layers, hidden

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state = self.out(self.mlp(x)).reshape(-1, 2, self.layers, self.hidden)
        state = torch.tanh(state).permute(1, 2, 0, 3)
        return state[0].contiguous(), state[1].contiguous()


class Speech2Landmarks(nn.Module):
    def __init__(self, width: Width):
        super().__init__()
        c, h = width.channels, width.lstm
        n_emotions = len(EMOTIONS)
        self.landmarks = LandmarkEncoder(c)
        self.film_audio = FiLM(n_emotions, c)
        self.film_initial = FiLM(n_emotions, self.landmarks.out_features)
        self.lstm = nn.LSTM(c + 2 * self.landmarks.out_features, h, LSTM_LAYERS, batch_first=True)
        self.initial_state = InitialState(self.landmarks.out_features + c, c, h, LSTM_LAYERS)
        self.head = nn.Linear(h, SPARSE_POINTS * 3)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def _lstm_input(self, audio, previous, initial_code, emotion):
        return torch.cat(
            [
                self.film_audio(audio, emotion),
                self.landmarks(previous),
                self.film_initial(initial_code, emotion),
            ],
            dim=-1,
        )

    def forward(
        self,
        audio: torch.Tensor,
        landmarks0: torch.Tensor,
        emotion: torch.Tensor,
        teacher: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Full sequence, autoregressive.

        audio: (B, T, channels) encoder features; landmarks0: (B, 110, 3) of the portrait;
        emotion: (B, T, 8) intensities; teacher: optional (B, T, 110, 3) ground truth fed as
        the previous frame (teacher forcing). Returns (B, T, 110, 3).
        """
        batch, frames = audio.shape[:2]
        initial_code = self.landmarks(landmarks0)
        h, c = self.initial_state(torch.cat([initial_code, audio[:, 0]], dim=-1))
        if teacher is not None:
            previous = torch.cat([landmarks0[:, None], teacher[:, :-1]], dim=1)
            code = initial_code[:, None].expand(-1, frames, -1)
            out, _ = self.lstm(self._lstm_input(audio, previous, code, emotion), (h, c))
            return landmarks0[:, None] + self.head(out).reshape(batch, frames, SPARSE_POINTS, 3)
        previous = landmarks0
        outputs = []
        for t in range(frames):
            x = self._lstm_input(audio[:, t], previous, initial_code, emotion[:, t])
            out, h, c = lstm_step(self.lstm, x, h, c)
            landmarks = landmarks0 + self.head(out).reshape(batch, SPARSE_POINTS, 3)
            outputs.append(landmarks)
            previous = landmarks
        return torch.stack(outputs, dim=1)


class Speech2LandmarksStep(nn.Module):
    """One frame: (audio (B, C), previous (B, 110, 3), landmarks0 (B, 110, 3), emotion (B, 8),
    h, c (2, B, H), first (B,) float 1.0 on a stream's first frame) -> (landmarks, h, c).

    On rows where ``first`` is 1 the incoming h, c are replaced by the learned initial state,
    so sessions at any point of their stream can share one batch.
    """

    def __init__(self, model: Speech2Landmarks):
        super().__init__()
        self.model = model

    def forward(self, audio, previous, landmarks0, emotion, h, c, first):
        m = self.model
        initial_code = m.landmarks(landmarks0)
        h0, c0 = m.initial_state(torch.cat([initial_code, audio], dim=-1))
        w = first[None, :, None]
        h = w * h0 + (1 - w) * h
        c = w * c0 + (1 - w) * c
        x = m._lstm_input(audio, previous, initial_code, emotion)
        out, h, c = lstm_step(m.lstm, x, h, c)
        landmarks = landmarks0 + m.head(out).reshape(-1, SPARSE_POINTS, 3)
        return landmarks, h, c
