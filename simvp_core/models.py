"""The SimVP model family (paper section 3) in one file: encoder -> translator -> decoder.

Frames are encoded one by one, the translator mixes the T latent frames stacked on the channel
axis, and the decoder maps each latent frame back to an image. Translators: `gsta` (SimVPv2),
`poolformer` (the paper's notebook variant), `poolformer-openstl` (OpenSTL's), `incepu` (SimVP v1's
Inception U-Net) and `tau` (initialised as OpenSTL does).
ModelConfig and the presets live in simvp_core.presets (no torch), re-exported here.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simvp_core.presets import (ACTIVATIONS, MODEL_FIELDS, PRESET_NAMES, PRESETS, TRANSLATORS, ModelConfig,
                                check_choice, resolve_model_config)

LAYER_SCALE_INIT = 1e-2
OPENSTL_POOLFORMER_LAYER_SCALE_INIT = 1e-5
INCEPTION_KERNELS = (3, 5, 7, 11)
INCEPTION_GROUPS = 8


# -- activations and regularisers ------------------------------------------------------------

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


# -- encoder and decoder ---------------------------------------------------------------------

def encoder_strides(n_s: int) -> list[int]:
    """1, 2, 1, 2, ...: downsample on every second block, starting with the second."""
    return [1 + i % 2 for i in range(n_s)]


class ConvBlock(nn.Module):
    """3x3 conv (stride 2 halves the size; upsample doubles it via PixelShuffle) -> GroupNorm(2) -> SiLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, upsample: bool = False) -> None:
        super().__init__()
        if upsample:
            self.conv = nn.Sequential(nn.Conv2d(c_in, 4 * c_out, 3, padding=1), nn.PixelShuffle(2))
        else:
            self.conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)
        self.norm = nn.GroupNorm(2, c_out)
        self.act = nn.SiLU()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(x)))


class Encoder(nn.Module):
    """n_s conv blocks; returns the latent and the first block's output (the skip)."""

    def __init__(self, c_in: int, c_s: int, n_s: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ConvBlock(c_in if i == 0 else c_s, c_s, stride=s)
                                    for i, s in enumerate(encoder_strides(n_s)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = skip = self.blocks[0](x)
        for block in self.blocks[1:]:
            x = block(x)
        return x, skip


class Decoder(nn.Module):
    """n_s conv blocks mirroring the encoder; the skip is added before the last; 1x1 readout."""

    def __init__(self, c_s: int, c_out: int, n_s: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ConvBlock(c_s, c_s, upsample=s == 2) for s in reversed(encoder_strides(n_s)))
        self.readout = nn.Conv2d(c_s, c_out, 1)

    def forward(self, z: Tensor, skip: Tensor) -> Tensor:
        for block in self.blocks[:-1]:
            z = block(z)
        return self.readout(self.blocks[-1](z + skip))


# -- MetaFormer translators: gsta, poolformer, tau ---------------------------------------------

def large_kernel(dim: int, c_out: int) -> nn.Sequential:
    """A 21x21 receptive field, cheaply: depthwise 5x5 -> depthwise 7x7 dilation 3 -> 1x1 conv."""
    return nn.Sequential(nn.Conv2d(dim, dim, 5, padding=2, groups=dim),
                         nn.Conv2d(dim, dim, 7, padding=9, dilation=3, groups=dim),
                         nn.Conv2d(dim, c_out, 1))


class GatedAttention(nn.Module):
    """gSTA (SimVPv2): 1x1 -> act -> large kernel to 2*dim, split f, g -> sigmoid(g) * f -> 1x1, + input."""

    def __init__(self, dim: int, act: str) -> None:
        super().__init__()
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.act = make_act(act)
        self.large_kernel = large_kernel(dim, 2 * dim)
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        f, g = self.large_kernel(self.act(self.proj_in(x))).chunk(2, dim=1)
        return self.proj_out(torch.sigmoid(g) * f) + x


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


class PoolMixer(nn.Module):
    """PoolFormer's token mixer: 3x3 average pooling (padding not counted) minus the input."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(x) - x


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


def _init_metaformer(m: nn.Module) -> None:
    """Convs normal(0, sqrt(2 / fan_out)) with fan_out = k*k*out/groups, linears trunc-normal 0.02."""
    if isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)


# Children of a MetaBlock that keep their own initialisation instead of the MetaFormer one, as in
# OpenSTL: TAU's attention is swapped in after the init ran (PyTorch's default init stays), and
# OpenSTL's PoolFormer MLP initialises itself (trunc-normal 0.02).
OWN_INIT = {"tau": ("mixer",), "poolformer-openstl": ("mlp",)}


class MetaBlock(nn.Module):
    """x + DropPath(ls1 * mixer(norm(x))), x + DropPath(ls2 * mlp(norm(x))), then a 1x1 conv if the width changes.

    BatchNorm, MixMlp and layer scale 1e-2; OpenSTL's PoolFormer: GroupNorm(1), PlainMlp and 1e-5.
    """

    def __init__(self, translator: str, dim: int, c_out: int, mlp_ratio: float, drop_path: float, act: str) -> None:
        super().__init__()
        mixers = {"gsta": lambda: GatedAttention(dim, act), "tau": lambda: TemporalAttention(dim, act),
                  "poolformer": PoolMixer, "poolformer-openstl": PoolMixer}
        openstl_pool = translator == "poolformer-openstl"
        norm = (lambda: nn.GroupNorm(1, dim)) if openstl_pool else (lambda: nn.BatchNorm2d(dim))
        mlp = PlainMlp if openstl_pool else MixMlp
        scale = OPENSTL_POOLFORMER_LAYER_SCALE_INIT if openstl_pool else LAYER_SCALE_INIT
        self.norm1 = norm()
        self.mixer = mixers[translator]()
        self.ls1 = nn.Parameter(torch.full((dim, 1, 1), scale))
        self.norm2 = norm()
        self.mlp = mlp(dim, int(dim * mlp_ratio), act)
        self.ls2 = nn.Parameter(torch.full((dim, 1, 1), scale))
        self.drop_path = DropPath(drop_path)
        for name, child in self.named_children():
            if name not in OWN_INIT.get(translator, ()):
                child.apply(_init_metaformer)
        # created after the init above: the width change keeps PyTorch's default init, as in SimVPv2
        self.resize = nn.Conv2d(dim, c_out, 1) if c_out != dim else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.ls1 * self.mixer(self.norm1(x)))
        x = x + self.drop_path(self.ls2 * self.mlp(self.norm2(x)))
        return self.resize(x)


class MetaTranslator(nn.Module):
    """n_t MetaBlocks: T*C_s -> C_t -> ... -> C_t -> T*C_s, drop-path rates linspace(0.01, drop_path, n_t)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        widths = [cfg.width] + [cfg.c_t] * (cfg.n_t - 1) + [cfg.width]
        rates = torch.linspace(0.01, cfg.drop_path, cfg.n_t, device="cpu").tolist()
        self.blocks = nn.Sequential(*(
            MetaBlock(cfg.translator, widths[i], widths[i + 1], cfg.mlp_ratio, rates[i], cfg.act)
            for i in range(cfg.n_t)))

    def forward(self, z: Tensor) -> Tensor:
        return self.blocks(z)


# -- Inception U-Net translator: incepu ------------------------------------------------------

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


# -- the model -------------------------------------------------------------------------------

class SimVP(nn.Module):
    """(B, T, C, H, W) -> (B, T, C, H, W): the next T frames, linear output (no sigmoid, no clamp)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        _, c, _, _ = cfg.in_shape
        self.encoder = Encoder(c, cfg.c_s, cfg.n_s)
        if cfg.translator == "incepu":
            self.translator = IncepU(cfg.width, cfg.c_t, cfg.n_t)
        else:
            self.translator = MetaTranslator(cfg)
        self.decoder = Decoder(cfg.c_s, c, cfg.n_s)

    def forward(self, x: Tensor) -> Tensor:
        b, t, c, h, w = x.shape
        latent, skip = self.encoder(x.reshape(b * t, c, h, w))
        _, c_s, h_s, w_s = latent.shape
        z = self.translator(latent.reshape(b, t * c_s, h_s, w_s))
        y = self.decoder(z.reshape(b * t, c_s, h_s, w_s), skip)
        return y.reshape(b, t, c, h, w)


def build_model(preset: str, **overrides: Any) -> SimVP:
    """A freshly initialised SimVP for a preset of paper Table 5, with optional field overrides."""
    return SimVP(resolve_model_config(preset, **overrides))


def count_params(module: nn.Module) -> int:
    """Number of parameters (each shared tensor counted once)."""
    return sum(p.numel() for p in module.parameters())


__all__ = ["ModelConfig", "PRESETS", "PRESET_NAMES", "MODEL_FIELDS", "TRANSLATORS", "ACTIVATIONS", "SimVP",
           "StarReLU", "build_model", "resolve_model_config", "count_params"]
