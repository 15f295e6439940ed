"""Building blocks shared by the stages."""

import torch
from torch import nn

LEAKY_SLOPE = 0.2


class MLP(nn.Module):
    """``depth`` x (Linear -> BatchNorm -> LeakyReLU), ``width`` hidden units (appendix A)."""

    def __init__(self, in_features: int, width: int, depth: int):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [
                nn.Linear(in_features if i == 0 else width, width, bias=False),
                nn.BatchNorm1d(width),
                nn.LeakyReLU(LEAKY_SLOPE),
            ]
        self.net = nn.Sequential(*layers)
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., in_features) -> (..., width); leading dims are flattened for BatchNorm."""
        lead = x.shape[:-1]
        return self.net(x.reshape(-1, x.shape[-1])).reshape(*lead, self.out_features)


class FiLM(nn.Module):
    """Feature-wise linear modulation by the emotion vector: x * (1 + gamma(e)) + beta(e).

    The projection starts at zero, so an untrained FiLM is the identity.
    """

    def __init__(self, condition_features: int, features: int):
        super().__init__()
        self.proj = nn.Linear(condition_features, 2 * features)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.proj(condition).chunk(2, dim=-1)
        return x * (1 + gamma) + beta


def lstm_step(
    lstm: nn.LSTM, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One time step of a unidirectional multi-layer ``nn.LSTM`` written out as matmuls.

    x: (B, input), h and c: (layers, B, hidden). Returns (output (B, hidden), h, c).
    Written out so that the exported step graph is plain MatMul/Sigmoid/Tanh with the
    state as ordinary inputs, whatever the exporter does with ``nn.LSTM``.
    """
    hs, cs = [], []
    inp = x
    for layer in range(lstm.num_layers):
        w_ih = getattr(lstm, f"weight_ih_l{layer}")
        w_hh = getattr(lstm, f"weight_hh_l{layer}")
        b = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
        gates = inp @ w_ih.T + h[layer] @ w_hh.T + b
        i, f, g, o = gates.chunk(4, dim=-1)
        c_new = torch.sigmoid(f) * c[layer] + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        hs.append(h_new)
        cs.append(c_new)
        inp = h_new
    return inp, torch.stack(hs), torch.stack(cs)
