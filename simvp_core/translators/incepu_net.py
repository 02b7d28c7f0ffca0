"""IncepU's network: Inception blocks (grouped convs k = 3, 5, 7, 11) in a U, SimVP v1's translator."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from simvp_core.presets import ModelConfig

INCEPTION_KERNELS = (3, 5, 7, 11)
INCEPTION_GROUPS = 8


class InceptionBlock(nn.Module):
    """1x1 conv to `hidden`, then the sum of grouped convs k = 3, 5, 7, 11, each -> GroupNorm -> LeakyReLU(0.2)."""

    def __init__(self, c_in: int, hidden: int, c_out: int) -> None:
        super().__init__()
        groups = INCEPTION_GROUPS if hidden % INCEPTION_GROUPS == 0 and c_out % INCEPTION_GROUPS == 0 else 1
        self.reduce = nn.Conv2d(c_in, hidden, 1)
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(hidden, c_out, k, padding=k // 2, groups=groups),
                          nn.GroupNorm(groups, c_out), nn.LeakyReLU(0.2))
            for k in INCEPTION_KERNELS)

    def forward(self, x: Tensor) -> Tensor:
        x = self.reduce(x)
        return sum(branch(x) for branch in self.branches)


class IncepU(nn.Module):
    """n_t Inception blocks down, n_t up; each up block after the first also sees its mirror's output (concat)."""

    def __init__(self, width: int, c_t: int, n_t: int) -> None:
        super().__init__()
        hidden = c_t // 2
        self.down = nn.ModuleList(InceptionBlock(width if i == 0 else c_t, hidden, c_t) for i in range(n_t))
        self.up = nn.ModuleList(InceptionBlock(c_t if i == 0 else 2 * c_t, hidden, width if i == n_t - 1 else c_t)
                                for i in range(n_t))

    def forward(self, z: Tensor) -> Tensor:
        skips = []
        for block in self.down:
            z = block(z)
            skips.append(z)
        z = self.up[0](z)
        for block, skip in zip(self.up[1:], reversed(skips[:-1])):
            z = block(torch.cat([z, skip], dim=1))
        return z


def build(cfg: ModelConfig) -> IncepU:
    """The Inception U-Net from T * c_s channels through c_t and back."""
    return IncepU(cfg.width, cfg.c_t, cfg.n_t)
