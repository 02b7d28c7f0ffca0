"""TrainConfig: every training setting, declared once: type, bounds, choices, help and group.

The training CLI, the fields a resume may change, the smoke caps, the search-space validation and
its JSON Schema are all derived from these declarations (pydantic v2); there is no second list.
"""

import difflib
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simvp_core.presets import ACTIVATIONS, PRESET_NAMES, TRANSLATORS

AUGMENTATIONS = ("none", "crop", "flip", "crop+flip")
DEVICES = ("auto", "cpu", "cuda")
AMP_MODES = ("auto", "bf16", "off")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
COMPILE_MODES = ("eager", "default", "graphs")
# `--fp32`: plain float32 in one flag (CLIs derive it from here): no autocast, channels first
FP32 = {"amp": "off", "memory_format": "contiguous"}
GROUPS = ("model", "data", "learning", "execution")  # execution: what a resume may change


def setting(default: Any, group: str, help: str, *, smoke_max: int | None = None, headline: bool = False,
            **bounds: Any) -> Any:
    """One field's declaration. smoke_max: its cap in a smoke run; headline: always shown in a plan."""
    extra: dict[str, Any] = {"group": group}
    if smoke_max is not None:
        extra["smoke_max"] = smoke_max
    if headline:
        extra["headline"] = True
    return Field(default, description=help, json_schema_extra=extra, **bounds)


def whole(value: Any) -> Any:
    """5.0 (as JSON and YAML writers give it) for an int field becomes 5; 5.5 stays, to be refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class Settings(BaseModel):
    """The settings of one training run, as plain pydantic so other models can nest them (a space
    file's `base`). Size fields left at None take the preset's value."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    # model (paper section 3; presets of Table 5)
    preset: Literal[PRESET_NAMES] = setting("simvpv2", "model", "named model preset (paper Table 5)",
                                            headline=True)
    translator: Literal[TRANSLATORS] | None = setting(None, "model", "override the preset's translator")
    n_s: int | None = setting(None, "model", "encoder/decoder blocks", ge=1, le=16)
    n_t: int | None = setting(None, "model", "translator blocks", ge=1, le=64, smoke_max=2)
    c_s: int | None = setting(None, "model", "encoder/decoder channels", ge=1, le=1024, smoke_max=8)
    c_t: int | None = setting(None, "model", "translator channels", ge=1, le=8192, smoke_max=16)
    mlp_ratio: float | None = setting(None, "model", "MLP expansion of the translator blocks", gt=0, le=64)
    drop_path: float | None = setting(None, "model", "stochastic depth rate", ge=0, lt=1)
    act: Literal[ACTIVATIONS] = setting("gelu", "model", "activation of the MetaFormer blocks", headline=True)
    # data (paper section 5)
    augment: Literal[AUGMENTATIONS] = setting("none", "data", "augmentation of the 20-frame training "
                                              "sequences", headline=True)
    train_size: int = setting(10_000, "data", "training sequences per epoch", ge=1, le=10_000_000,
                              smoke_max=32)
    val_size: int = setting(1_000, "data", "validation sequences (fixed, training digits)", ge=1,
                            le=1_000_000, smoke_max=16)
    test_size: int = setting(10_000, "data", "test sequences", ge=1, le=1_000_000, smoke_max=16)
    # learning: Adam + OneCycleLR, loss = MSE + lambda_gdl * GDL + lambda_ddr * DDR
    epochs: int = setting(100, "learning", "training epochs (the OneCycle schedule's length)", ge=1,
                          le=100_000, smoke_max=2, headline=True)
    batch_size: int = setting(32, "learning", "training sequences per step", ge=1, le=65_536, smoke_max=8,
                              headline=True)
    lr: float = setting(1e-3, "learning", "peak learning rate of OneCycle", gt=0, le=10, headline=True)
    weight_decay: float = setting(0.0, "learning", "Adam weight decay (L2 penalty)", ge=0, le=1)
    lambda_gdl: float = setting(0.0, "learning", "weight of the gradient difference loss", ge=0, le=100,
                                headline=True)
    lambda_ddr: float = setting(0.0, "learning", "weight of the DDR loss", ge=0, le=100, headline=True)
    ddr_tau: float = setting(0.1, "learning", "softmax temperature of DDR", gt=0, le=100)
    seed: int = setting(42, "learning", "seed of the weights, the data and the augmentation", ge=0,
                        le=2**32 - 1)
    # execution: where and how fast; none of these change what is learned beyond float rounding
    device: Literal[DEVICES] = setting("auto", "execution", "where to run: auto = cuda if visible")
    eval_batch_size: int = setting(100, "execution", "sequences per evaluation batch", ge=1, le=65_536,
                                   smoke_max=16)
    amp: Literal[AMP_MODES] = setting("auto", "execution", "bf16 autocast: auto = where the device computes "
                                      "bf16 natively (a CUDA GPU with bf16; a CPU with avx512_bf16 or AMX), "
                                      "else float32; off = float32")
    memory_format: Literal[MEMORY_FORMATS] = setting("auto", "execution", "layout of the conv tensors: auto "
                                                     "= contiguous until channels_last is measured faster "
                                                     "and correct on the device (with bf16 on a CPU it is "
                                                     "wrong: refused)")
    compile: Literal[COMPILE_MODES] = setting("eager", "execution", "the training step's forward and loss: "
                                              "eager, torch.compile (default), or torch.compile with CUDA "
                                              "graphs (graphs: CUDA only)")
    sync_every: int = setting(25, "execution", "read the loss back every N steps", ge=1, le=100_000)

    @model_validator(mode="before")
    @classmethod
    def _plain_values(cls, values: Any) -> Any:
        """Before the strict type checks: integral floats for int fields become ints, and false for
        a field with the choice 'off' becomes 'off' (YAML 1.1, as yaml.safe_load reads it, turns a
        bare `off` into false)."""
        if not isinstance(values, dict):
            return values
        return {k: whole(v) if FIELD_TYPES.get(k, (None,))[0] is int else
                "off" if v is False and "off" in (choices(k) or ()) else v for k, v in values.items()}


class ConfigError(ValueError):
    """A TrainConfig refused, in one line: the field, what it takes, what it got."""


class TrainConfig(Settings):
    """One training run: the Settings, frozen, refused on construction with a one-line ConfigError."""

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as e:
            raise ConfigError(explain(e)) from None

    def model_overrides(self) -> dict[str, Any]:
        """The model fields set explicitly, as keyword arguments for build_model."""
        names = [n for n in fields_in("model") if n != "preset"]
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def to_dict(self) -> dict[str, Any]:
        """Every field, in declaration order: what checkpoints, results and MLflow params hold."""
        return self.model_dump()

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build from plain values (YAML, JSON, Tune); unknown keys and wrong types raise ConfigError."""
        return cls(**values)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with some fields changed, validated like a new one."""
        return type(self)(**{**self.to_dict(), **changes})


def without_none(annotation: Any) -> Any:
    """`X | None` -> X; any other annotation as it is."""
    args = get_args(annotation)
    if get_origin(annotation) is Literal or type(None) not in args:
        return annotation
    return Union[tuple(a for a in args if a is not type(None))]  # noqa: UP007 (a runtime union)


def _type_of(annotation: Any) -> tuple[type, bool]:
    """(base type, accepts None) of a field's annotation; a Literal's base type is its values' type."""
    base = without_none(annotation)
    if get_origin(base) is Literal:
        return type(get_args(base)[0]), base is not annotation
    return base, base is not annotation


FIELD_TYPES: dict[str, tuple[type, bool]] = {n: _type_of(f.annotation) for n, f in Settings.model_fields.items()}


def declared(key: str) -> dict[str, Any]:
    """Field name -> the value of `key` (group, smoke_max, headline) for the fields that declare it."""
    extras = {n: f.json_schema_extra or {} for n, f in Settings.model_fields.items()}
    return {n: extra[key] for n, extra in extras.items() if key in extra}


def fields_in(group: str) -> tuple[str, ...]:
    """The fields of one group, in declaration order."""
    return tuple(n for n, g in declared("group").items() if g == group)


def choices(name: str) -> tuple | None:
    """The values a Literal field allows, None for the others (and for unknown names)."""
    if name not in Settings.model_fields:
        return None
    annotation = without_none(Settings.model_fields[name].annotation)
    return get_args(annotation) if get_origin(annotation) is Literal else None


def expectation(annotation: Any, constraints: tuple = ()) -> str:
    """A scalar type and its bounds in words: 'an integer in [1, 100]', 'one of a, b', 'true or false'."""
    if get_origin(annotation) is Annotated:
        base, *meta = get_args(annotation)
        return expectation(base, (*constraints, *meta))
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(map(str, get_args(annotation)))
    if without_none(annotation) is not annotation:
        return expectation(without_none(annotation), constraints) + " or null"
    names = {bool: "true or false", str: "a string", int: "an integer", float: "a number"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation))) + _range(constraints)


def takes(name: str) -> str:
    """What field `name` accepts, in words, from its declaration."""
    info = Settings.model_fields[name]
    return expectation(info.annotation, tuple(info.metadata))


def _range(constraints: tuple) -> str:
    """The bounds among annotated_types constraints in words: ' in [1, 100]', ' > 0', or ''."""
    low = high = None
    for c in constraints:
        if isinstance(c, (at.Ge, at.Gt)):
            low = ("[", ">=", c.ge) if isinstance(c, at.Ge) else ("(", ">", c.gt)
        elif isinstance(c, (at.Le, at.Lt)):
            high = ("]", "<=", c.le) if isinstance(c, at.Le) else (")", "<", c.lt)
    if low and high:
        return f" in {low[0]}{_number(low[2])}, {_number(high[2])}{high[0]}"
    bound = low or high
    return f" {bound[1]} {_number(bound[2])}" if bound else ""


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def explain(error: ValidationError) -> str:
    """A ValidationError of TrainConfig as one line per problem, joined by '; '."""
    lines = []
    for e in error.errors(include_url=False):
        name = str(e["loc"][0]) if e["loc"] else "(config)"
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown TrainConfig field {name!r}{did_you_mean(name, FIELD_TYPES)}; "
                         f"valid: {', '.join(FIELD_TYPES)}")
        elif name in FIELD_TYPES:
            lines.append(f"{name} must be {takes(name)}, got {show(e['input'])}")
        else:
            lines.append(e["msg"])
    return "; ".join(lines)


def show(value: Any) -> str:
    """A value as a message quotes it: 0, 'ten' (str), null."""
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    return f"{value!r} ({type(value).__name__})"


def did_you_mean(name: Any, options: Any) -> str:
    """' (did you mean 'x'?)' for the closest option, or ''."""
    close = difflib.get_close_matches(str(name), [str(o) for o in options], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


__all__ = ["TrainConfig", "Settings", "ConfigError", "FIELD_TYPES", "GROUPS", "AUGMENTATIONS", "DEVICES",
           "AMP_MODES", "MEMORY_FORMATS", "COMPILE_MODES", "FP32", "TRANSLATORS", "ACTIVATIONS",
           "PRESET_NAMES", "setting", "declared", "fields_in", "choices", "expectation", "takes", "explain",
           "show", "did_you_mean", "whole", "without_none"]
