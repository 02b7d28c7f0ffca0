"""TrainConfig: every setting the paper varies, in one frozen dataclass.

It is the single source of truth: the training CLI makes one flag per field, and the search
space files use these field names as keys.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any

from simvp_core.models import ACTIVATIONS, PRESETS, TRANSLATORS

AUGMENTATIONS = ("none", "crop", "flip", "crop+flip")
DEVICES = ("auto", "cpu", "cuda")
AMP_MODES = ("auto", "bf16", "off")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Size fields left at None take the preset's value."""

    # model (paper section 3; presets of Table 5)
    preset: str = "simvpv2"
    translator: str | None = None
    n_s: int | None = None
    n_t: int | None = None
    c_s: int | None = None
    c_t: int | None = None
    mlp_ratio: float | None = None
    drop_path: float | None = None
    act: str = "gelu"
    # data (paper section 5)
    augment: str = "none"
    train_size: int = 10_000
    val_size: int = 1_000
    test_size: int = 10_000
    # optimisation: Adam + OneCycleLR, loss = MSE + lambda_gdl * GDL + lambda_ddr * DDR
    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    lambda_gdl: float = 0.0
    lambda_ddr: float = 0.0
    ddr_tau: float = 0.1
    seed: int = 42
    # execution: where and how fast; none of these change what is learned beyond float rounding
    device: str = "auto"
    eval_batch_size: int = 100
    amp: str = "auto"
    channels_last: bool = False
    compile: bool = False
    sync_every: int = 25

    def __post_init__(self) -> None:
        _check_choice("translator", self.translator, TRANSLATORS, optional=True)
        _check_choice("act", self.act, ACTIVATIONS)
        _check_choice("augment", self.augment, AUGMENTATIONS)
        _check_choice("device", self.device, DEVICES)
        _check_choice("amp", self.amp, AMP_MODES)
        for name in ("train_size", "val_size", "test_size", "epochs", "batch_size",
                     "eval_batch_size", "sync_every"):
            _check_min(name, getattr(self, name), 1)
        for name in ("n_s", "n_t", "c_s", "c_t"):
            _check_min(name, getattr(self, name), 1, optional=True)
        _check_min("mlp_ratio", self.mlp_ratio, 0.0, optional=True, strict=True)
        if self.drop_path is not None and not 0.0 <= self.drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {self.drop_path!r}")
        _check_min("lr", self.lr, 0.0, strict=True)
        _check_min("ddr_tau", self.ddr_tau, 0.0, strict=True)
        _check_min("lambda_gdl", self.lambda_gdl, 0.0)
        _check_min("lambda_ddr", self.lambda_ddr, 0.0)
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")

    def model_overrides(self) -> dict[str, Any]:
        """The model fields set explicitly, as keyword arguments for build_model."""
        names = ("translator", "n_s", "n_t", "c_s", "c_t", "mlp_ratio", "drop_path", "act")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build from plain values (YAML, JSON, Tune); unknown keys and wrong types raise ValueError."""
        unknown = sorted(set(values) - set(FIELD_TYPES))
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; valid: {', '.join(FIELD_TYPES)}")
        return cls(**{k: coerce(k, v) for k, v in values.items()})

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def _resolve_types() -> dict[str, tuple[type, bool]]:
    """Field name -> (base type, accepts None)."""
    hints = typing.get_type_hints(TrainConfig)
    out = {}
    for f in dataclasses.fields(TrainConfig):
        hint = hints[f.name]
        args = typing.get_args(hint)
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            base = next(a for a in args if a is not type(None))
            out[f.name] = (base, True)
        else:
            out[f.name] = (hint, False)
    return out


FIELD_TYPES: dict[str, tuple[type, bool]] = _resolve_types()


def coerce(name: str, value: Any) -> Any:
    """Check one value against its field's type; ints pass as floats, never the other way."""
    base, optional = FIELD_TYPES[name]
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name} must be a {base.__name__}, got null")
    if base is bool:
        if isinstance(value, bool):
            return value
    elif base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif base is str:
        if isinstance(value, str):
            return value
    raise ValueError(f"{name} must be a {base.__name__}, got {value!r} ({type(value).__name__})")


def _check_choice(name: str, value: Any, choices: tuple[str, ...], optional: bool = False) -> None:
    if value is None and optional:
        return
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _check_min(name: str, value: Any, low: float, optional: bool = False, strict: bool = False) -> None:
    if value is None and optional:
        return
    if value != value or (value <= low if strict else value < low):  # value != value: NaN
        op = ">" if strict else ">="
        raise ValueError(f"{name} must be {op} {low}, got {value!r}")


__all__ = ["TrainConfig", "FIELD_TYPES", "coerce", "TRANSLATORS", "ACTIVATIONS", "AUGMENTATIONS"]
