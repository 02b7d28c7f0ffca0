"""The paper's PoolFormer network: MetaFormer blocks whose mixer is 3x3 average pooling."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from simvp_core.translators.metaformer_net import MetaTranslator, Recipe

if TYPE_CHECKING:
    from simvp_core.presets import ModelConfig


class PoolMixer(nn.Module):
    """PoolFormer's token mixer: 3x3 average pooling (padding not counted) minus the input."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(x) - x


def pool_mixer(dim: int, act: str) -> PoolMixer:
    """A PoolMixer for any width: pooling has no weights and no activation."""
    return PoolMixer()


def build(cfg: ModelConfig) -> MetaTranslator:
    """n_t MetaFormer blocks mixing by pooling, with the paper's BatchNorm, MixMlp and layer scale."""
    return MetaTranslator(cfg, Recipe(mixer=pool_mixer))
