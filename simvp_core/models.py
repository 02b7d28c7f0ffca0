"""The SimVP model (paper section 3): encoder -> translator -> decoder.

Frames are encoded one by one, the translator mixes the T latent frames stacked on the channel
axis, and the decoder maps each latent frame back to an image. Each translator is registered in
simvp_core.translators and built from its own module; ModelConfig and the presets live in
simvp_core.presets (no torch), re-exported here.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from simvp_core.presets import (
    ACTIVATIONS,
    MODEL_FIELDS,
    PRESET_NAMES,
    PRESETS,
    TRANSLATORS,
    ModelConfig,
    resolve_model_config,
)
from simvp_core.translators import registry

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


# -- the model -------------------------------------------------------------------------------

class SimVP(nn.Module):
    """(B, T, C, H, W) -> (B, T, C, H, W): the next T frames, linear output (no sigmoid, no clamp)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        _, c, _, _ = cfg.in_shape
        self.encoder = Encoder(c, cfg.c_s, cfg.n_s)
        self.translator = registry()[cfg.translator].build(cfg)
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
           "build_model", "resolve_model_config", "count_params"]
