"""gSTA's network: MetaFormer blocks with gated large-kernel attention (SimVPv2)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from simvp_core.layers import make_act
from simvp_core.translators.metaformer_net import MetaTranslator, Recipe, large_kernel

if TYPE_CHECKING:
    from simvp_core.presets import ModelConfig


class GatedAttention(nn.Module):
    """gSTA: 1x1 -> act -> large kernel to 2*dim, split f, g -> sigmoid(g) * f -> 1x1, + input."""

    def __init__(self, dim: int, act: str) -> None:
        super().__init__()
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.act = make_act(act)
        self.large_kernel = large_kernel(dim, 2 * dim)
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        f, g = self.large_kernel(self.act(self.proj_in(x))).chunk(2, dim=1)
        return self.proj_out(torch.sigmoid(g) * f) + x


def build(cfg: ModelConfig) -> MetaTranslator:
    """n_t MetaFormer blocks mixing with gated attention."""
    return MetaTranslator(cfg, Recipe(mixer=GatedAttention))
