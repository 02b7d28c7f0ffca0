"""Layers the model and its translators share: the activations ModelConfig.act names, and DropPath."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simvp_core.presets import ACTIVATIONS, check_choice


class StarReLU(nn.Module):
    """s * relu(x)^2 + b with one learnable scale s and bias b shared by all channels (paper 5.1)."""

    def __init__(self) -> None:
        super().__init__()
        # 0-dim so that they never promote bf16 activations to float32
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.bias = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * F.relu(x).square() + self.bias


def make_act(name: str) -> nn.Module:
    """The activation named by ModelConfig.act."""
    check_choice("act", name, ACTIVATIONS)
    return nn.GELU() if name == "gelu" else StarReLU()


class DropPath(nn.Module):
    """Stochastic depth: in training, drop a sample's whole residual branch with probability p."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < keep
        return x * mask.to(x.dtype) / keep
