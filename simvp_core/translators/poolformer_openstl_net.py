"""OpenSTL's PoolFormer network: the paper's pooling mixer with GroupNorm(1), a plain MLP and layer
scale 1e-5."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from simvp_core.layers import make_act
from simvp_core.translators.metaformer_net import MetaTranslator, Recipe
from simvp_core.translators.poolformer_net import pool_mixer

if TYPE_CHECKING:
    from simvp_core.presets import ModelConfig

LAYER_SCALE_INIT = 1e-5


class PlainMlp(nn.Module):
    """OpenSTL PoolFormer's MLP: 1x1 conv to the hidden width -> act -> 1x1 conv back, trunc-normal 0.02."""

    def __init__(self, dim: int, hidden: int, act: str) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = make_act(act)
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        for conv in (self.fc1, self.fc2):
            nn.init.trunc_normal_(conv.weight, std=0.02)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


def group_norm(dim: int) -> nn.GroupNorm:
    """GroupNorm with one group: LayerNorm over channels and pixels, as OpenSTL's PoolFormer."""
    return nn.GroupNorm(1, dim)


def build(cfg: ModelConfig) -> MetaTranslator:
    """n_t MetaFormer blocks mixing by pooling, with OpenSTL's norm, MLP and layer scale."""
    # the MLP initialises itself (trunc-normal 0.02) instead of taking the MetaFormer init
    return MetaTranslator(cfg, Recipe(mixer=pool_mixer, norm=group_norm, mlp=PlainMlp,
                                      layer_scale=LAYER_SCALE_INIT, own_init=("mlp",)))
