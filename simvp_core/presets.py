"""ModelConfig, the presets and the architecture's names, without torch.

ModelConfig validates one architecture; TrainConfig and the search read these names and check
configurations without paying for importing torch. Translator names, their rules and their presets
come from the translators' declarations (simvp_core.translators), each declared once there.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from simvp_core.translators import registry

TRANSLATORS = tuple(registry())
ACTIVATIONS = ("gelu", "starrelu")


@dataclass(frozen=True)
class ModelConfig:
    """The architecture of one SimVP model, validated on construction."""

    translator: str
    n_s: int
    n_t: int
    c_s: int
    c_t: int
    act: str = "gelu"
    mlp_ratio: float = 8.0
    drop_path: float = 0.0
    in_shape: tuple = (10, 1, 64, 64)  # (T, C, H, W) of one input sequence

    def __post_init__(self) -> None:
        if not isinstance(self.in_shape, (tuple, list)) or len(self.in_shape) != 4:
            raise ValueError(f"in_shape must be (T, C, H, W), got {self.in_shape!r}")
        object.__setattr__(self, "in_shape", tuple(self.in_shape))
        check_choice("translator", self.translator, TRANSLATORS)
        check_choice("act", self.act, ACTIVATIONS)
        for name in ("n_s", "n_t", "c_s", "c_t"):
            _check_positive_int(name, getattr(self, name))
        for name, value in zip(("T", "C", "H", "W"), self.in_shape):
            _check_positive_int(f"in_shape {name}", value)
        if self.c_s % 2:
            raise ValueError(f"c_s must be even (the encoder and decoder use GroupNorm(2)), got {self.c_s}")
        registry()[self.translator].check(self)
        if not (isinstance(self.mlp_ratio, (int, float)) and 0 < self.mlp_ratio < math.inf
                and int(self.mlp_ratio * min(self.c_t, self.width)) >= 1):
            raise ValueError(f"mlp_ratio must be > 0 and give an MLP of >= 1 channel, got {self.mlp_ratio!r}")
        if not (isinstance(self.drop_path, (int, float)) and 0.0 <= self.drop_path < 1.0):
            raise ValueError(f"drop_path must be in [0, 1), got {self.drop_path!r}")
        _, _, h, w = self.in_shape
        factor = 2 ** (self.n_s // 2)
        if h % factor or w % factor:
            raise ValueError(f"frame size {h}x{w} must be divisible by {factor} = 2 ** (n_s // 2), the "
                             f"encoder's downsampling with n_s={self.n_s}; choose a smaller n_s or frame size")

    @property
    def width(self) -> int:
        """Channels the translator sees: the T latent frames stacked, T * c_s."""
        return self.in_shape[0] * self.c_s


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """Refuse a name outside its registry, listing the registry."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


# every translator's presets (paper Table 5 and OpenSTL's PoolFormer), in translator order
PRESETS: dict[str, ModelConfig] = {name: ModelConfig(t.name, **sizes) for t in registry().values()
                                   for name, sizes in t.presets.items()}
PRESET_NAMES = tuple(PRESETS)
MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig))


def resolve_model_config(preset: str, **overrides: Any) -> ModelConfig:
    """The preset's ModelConfig with the given fields replaced, validated."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - set(MODEL_FIELDS))
    if unknown:
        raise ValueError(f"unknown model override(s) {unknown}; valid: {', '.join(MODEL_FIELDS)}")
    return dataclasses.replace(PRESETS[preset], **overrides)
