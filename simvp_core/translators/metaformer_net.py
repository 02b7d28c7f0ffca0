"""The MetaFormer block stack gsta, tau and both PoolFormers build on; each brings a Recipe: its
mixer, norm, MLP, layer-scale init and the parts that keep their own initialisation."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from simvp_core.layers import DropPath, make_act

if TYPE_CHECKING:
    from simvp_core.presets import ModelConfig

LAYER_SCALE_INIT = 1e-2


def large_kernel(dim: int, c_out: int) -> nn.Sequential:
    """A 21x21 receptive field, cheaply: depthwise 5x5 -> depthwise 7x7 dilation 3 -> 1x1 conv."""
    return nn.Sequential(nn.Conv2d(dim, dim, 5, padding=2, groups=dim),
                         nn.Conv2d(dim, dim, 7, padding=9, dilation=3, groups=dim),
                         nn.Conv2d(dim, c_out, 1))


class MixMlp(nn.Module):
    """1x1 conv to the hidden width -> depthwise 3x3 -> act -> 1x1 conv back."""

    def __init__(self, dim: int, hidden: int, act: str) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = make_act(act)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x))))


def _init_metaformer(m: nn.Module) -> None:
    """Convs normal(0, sqrt(2 / fan_out)) with fan_out = k*k*out/groups, linears trunc-normal 0.02."""
    if isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)


@dataclass(frozen=True)
class Recipe:
    """What one MetaFormer translator puts in its blocks."""

    mixer: Callable[[int, str], nn.Module]  # (dim, act) -> the token mixer
    norm: Callable[[int], nn.Module] = nn.BatchNorm2d  # dim -> a norm
    mlp: Callable[[int, int, str], nn.Module] = MixMlp  # (dim, hidden, act) -> the MLP
    layer_scale: float = LAYER_SCALE_INIT
    # children that keep their own initialisation instead of the MetaFormer one, as in OpenSTL
    own_init: tuple[str, ...] = ()


class MetaBlock(nn.Module):
    """x + DropPath(ls1 * mixer(norm(x))), x + DropPath(ls2 * mlp(norm(x))), then a 1x1 conv if the width changes."""

    def __init__(self, recipe: Recipe, dim: int, c_out: int, mlp_ratio: float, drop_path: float, act: str) -> None:
        super().__init__()
        self.norm1 = recipe.norm(dim)
        self.mixer = recipe.mixer(dim, act)
        self.ls1 = nn.Parameter(torch.full((dim, 1, 1), recipe.layer_scale))
        self.norm2 = recipe.norm(dim)
        self.mlp = recipe.mlp(dim, int(dim * mlp_ratio), act)
        self.ls2 = nn.Parameter(torch.full((dim, 1, 1), recipe.layer_scale))
        self.drop_path = DropPath(drop_path)
        for name, child in self.named_children():
            if name not in recipe.own_init:
                child.apply(_init_metaformer)
        # created after the init above: the width change keeps PyTorch's default init, as in SimVPv2
        self.resize = nn.Conv2d(dim, c_out, 1) if c_out != dim else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.ls1 * self.mixer(self.norm1(x)))
        x = x + self.drop_path(self.ls2 * self.mlp(self.norm2(x)))
        return self.resize(x)


class MetaTranslator(nn.Module):
    """n_t MetaBlocks: T*C_s -> C_t -> ... -> C_t -> T*C_s, drop-path rates linspace(0.01, drop_path, n_t)."""

    def __init__(self, cfg: ModelConfig, recipe: Recipe) -> None:
        super().__init__()
        widths = [cfg.width] + [cfg.c_t] * (cfg.n_t - 1) + [cfg.width]
        rates = torch.linspace(0.01, cfg.drop_path, cfg.n_t, device="cpu").tolist()
        self.blocks = nn.Sequential(*(
            MetaBlock(recipe, widths[i], widths[i + 1], cfg.mlp_ratio, rates[i], cfg.act)
            for i in range(cfg.n_t)))

    def forward(self, z: Tensor) -> Tensor:
        return self.blocks(z)
