"""TAU's network: MetaFormer blocks whose attention multiplies a large kernel by a squeeze-excitation gate."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from simvp_core.layers import make_act
from simvp_core.translators.metaformer_net import MetaTranslator, Recipe, large_kernel

if TYPE_CHECKING:
    from simvp_core.presets import ModelConfig


class TemporalAttention(nn.Module):
    """TAU: 1x1 -> act -> u; large kernel(u) * squeeze-excitation gate(u) * u -> 1x1, + input."""

    def __init__(self, dim: int, act: str) -> None:
        super().__init__()
        hidden = max(1, dim // max(dim // 16, 4))
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.act = make_act(act)
        self.large_kernel = large_kernel(dim, dim)
        self.gate = nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.ReLU(),
                                  nn.Linear(hidden, dim, bias=False), nn.Sigmoid())
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        u = self.act(self.proj_in(x))
        gate = self.gate(u.mean(dim=(2, 3)))[:, :, None, None]
        return self.proj_out(self.large_kernel(u) * gate * u) + x


def build(cfg: ModelConfig) -> MetaTranslator:
    """n_t MetaFormer blocks mixing with TAU's attention."""
    # the attention keeps PyTorch's default init: OpenSTL swaps it in after its init ran
    return MetaTranslator(cfg, Recipe(mixer=TemporalAttention, own_init=("mixer",)))
