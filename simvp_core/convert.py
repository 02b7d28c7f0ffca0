"""`python -m simvp_core.convert from-openstl CKPT OUT` / `to-openstl CKPT OUT`: OpenSTL checkpoints.

State dicts are mapped by name, one rule per module, between our `encoder` / `translator` / `decoder`
and OpenSTL's `enc` / `hid` / `dec`; layer scales change shape, OpenSTL's (C,) against our
(C, 1, 1). The architecture of an OpenSTL checkpoint is read off its names and shapes. Our model
file holds {"format", "preset", "overrides", "model"}: what `build_model(preset, **overrides)`
needs, loaded with `weights_only=True`. Exit codes: 0 done, 2 bad input (one line).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from simvp_core.atomic import atomic_file
from simvp_core.files import FileError, check_output, open_regular
from simvp_core.models import SimVP, build_model
from simvp_core.oneline import OneLineParser, print_error
from simvp_core.outputs import CHECKPOINT_FILE
from simvp_core.presets import MODEL_FIELDS, PRESETS, ModelConfig
from simvp_core.translators import Rules, count_blocks, registry, weight_shape

FORMAT = "simvp-model/1"
# the kinds of file the commands read and write (what an existing output must be to be replaced)
MODEL_FILE, TRAINER_CHECKPOINT, OPENSTL_FILE = "a SimVP model file", "a trainer checkpoint", "an OpenSTL checkpoint"
LIGHTNING_PREFIX = "model."
EXIT_BAD_INPUT = 2

# (our name, OpenSTL's name) of the encoder and decoder; {i} is a block index; a name ending in "."
# is a prefix whose rest (weight, bias, running_mean, ...) is kept as it is
CODEC_RULES: Rules = (
    ("encoder.blocks.{i}.conv.", "enc.enc.{i}.conv.conv."),
    ("encoder.blocks.{i}.norm.", "enc.enc.{i}.conv.norm."),
    ("decoder.blocks.{i}.conv.", "dec.dec.{i}.conv.conv."),
    ("decoder.blocks.{i}.norm.", "dec.dec.{i}.conv.norm."),
    ("decoder.readout.", "dec.readout."),
)
# then each translator's own rules, as its declaration gives them (shared ones once)
RULES: Rules = tuple(dict.fromkeys(CODEC_RULES + tuple(r for t in registry().values() for r in t.openstl_rules)))
OURS, OPENSTL = "ours", "openstl"
# OpenSTL's SimVP_Model(model_type=...) for each translator it has
OPENSTL_MODEL_TYPES = {t.name: t.openstl for t in registry().values() if t.openstl}


class ConvertError(ValueError):
    """A checkpoint that cannot be converted or loaded, in one line naming what is wrong."""


def _pattern(template: str) -> re.Pattern:
    body = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{j\}", r"(?P<j>\d+)")
    return re.compile("^" + body + ("(?P<rest>.+)$" if template.endswith(".") else "$"))


_COMPILED = {OURS: [(_pattern(o), t) for o, t in RULES], OPENSTL: [(_pattern(t), o) for o, t in RULES]}


def rename(name: str, source: str) -> str | None:
    """The other side's name for a key named in `source` (OURS or OPENSTL); None if no rule maps it."""
    for pattern, target in _COMPILED[source]:
        match = pattern.match(name)
        if match:
            groups = match.groupdict()
            return target.format(i=groups.get("i"), j=groups.get("j")) + (groups.get("rest") or "")
    return None


def _names(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def convert_state(state: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """A state dict renamed from `source` to the other side, layer scales reshaped; ConvertError
    naming the keys no rule maps."""
    unknown = [k for k in state if rename(k, source) is None]
    if unknown:
        hint = "; StarReLU's scalars have no OpenSTL counterpart (it uses GELU)" if any(
            ".act." in k for k in unknown) else ""
        other = "OpenSTL" if source == OURS else "SimVP"
        raise ConvertError(f"{len(unknown)} key(s) with no {other} name: {_names(unknown)}{hint}")
    out = {}
    for key, value in state.items():
        name = rename(key, source)
        if name.endswith((".ls1", ".ls2")):
            value = value.reshape(-1, 1, 1)
        elif name.endswith(("layer_scale_1", "layer_scale_2")):
            value = value.reshape(-1)
        out[name] = value
    return out


# -- the architecture of a state dict (our names) -----------------------------------------------

def _shape(state: dict, key: str) -> tuple[int, ...]:
    """The shape of a weight the architecture is read from; ConvertError if the state dict lacks it."""
    try:
        return weight_shape(state, key)
    except KeyError:
        raise ConvertError(f"cannot tell the architecture: no key {key!r}; expected a SimVP state dict "
                           f"({', '.join(OPENSTL_MODEL_TYPES.values())})") from None


def infer_config(state: dict[str, Tensor], frame_size: tuple[int, int] = (64, 64)) -> ModelConfig:
    """The ModelConfig a state dict (our names) was built with, from its names and shapes: of the
    translators whose sizes read off it, the one whose model has its keys (the nearest, if none has
    them all, so that check_fits can name what differs).

    Frame height and width leave no trace in the weights: `frame_size` gives them.
    """
    c_s, c_in = _shape(state, "encoder.blocks.0.conv.weight")[:2]
    codec = {"n_s": count_blocks(state, "encoder.blocks."), "c_s": c_s,
             "act": "starrelu" if any(k.endswith(".act.scale") for k in state) else "gelu"}
    candidates, refusals = [], []
    for translator in registry().values():
        try:
            sizes = translator.read_sizes(state)
        except KeyError:  # not this translator's weights
            continue
        width = sizes.pop("width")
        if width % c_s:
            refusals.append(f"translator width {width} is not a multiple of the encoder's {c_s} channels; "
                            f"expected T * c_s: not a SimVP state dict")
            continue
        preset = next(iter(translator.presets.values()))  # what the weights do not show
        try:
            candidates.append(ModelConfig(translator.name, **{**preset, **codec, **sizes},
                                          in_shape=(width // c_s, c_in, *frame_size)))
        except ValueError as e:
            refusals.append(str(e))
    if not candidates:
        raise ConvertError(refusals[0] if refusals else "cannot tell the translator: no weights of "
                           f"{', '.join(registry())}; expected a SimVP state dict")
    keys = set(state)
    return min(candidates, key=lambda cfg: len(keys ^ _model_keys(cfg)))  # ties: registry order


def _model_keys(cfg: ModelConfig) -> set[str]:
    """The state dict keys of a model of cfg, built on the meta device (no memory, no init)."""
    with torch.device("meta"):
        return set(SimVP(cfg).state_dict())


def preset_for(cfg: ModelConfig) -> tuple[str, dict[str, Any]]:
    """The preset with cfg's translator nearest to cfg (all fields equal if one is), and the overrides."""
    candidates = [name for name, p in PRESETS.items() if p.translator == cfg.translator]
    name = next((n for n in candidates if PRESETS[n] == cfg), candidates[0])
    preset, wanted = dataclasses.asdict(PRESETS[name]), dataclasses.asdict(cfg)
    return name, {k: wanted[k] for k in MODEL_FIELDS if wanted[k] != preset[k]}


def check_fits(model: nn.Module, state: dict[str, Tensor], source: str = OURS) -> None:
    """ConvertError naming the keys of `state` (our names) missing, unknown to the model, misshapen,
    not tensors or complex (whose imaginary part loading would drop), each named as `source` names it."""
    cfg = model.cfg
    if not isinstance(state, dict):
        raise ConvertError(f"its weights are a {type(state).__name__}, not a state dict (name -> tensor)")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    shown = (lambda k: str(k)[:80]) if source == OURS else (lambda k: rename(k, OURS) or str(k)[:80])
    missing = [shown(k) for k in expected if k not in state]
    unexpected = [shown(k) for k in state if k not in expected]
    tensors = {k: v for k, v in state.items() if k in expected and isinstance(v, Tensor)}
    wrong = [f"{shown(k)} {list(v.shape)} (expected {list(expected[k])})" for k, v in tensors.items()
             if tuple(v.shape) != expected[k]]
    problems = [f"{what}: {_names(keys, 2)}" for what, keys in
                (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong),
                 ("not a tensor", [shown(k) for k in state if k in expected and k not in tensors]),
                 ("complex, not real", [shown(k) for k, v in tensors.items() if v.is_complex()])) if keys]
    if problems:
        raise ConvertError(f"does not fit {cfg.translator} n_s={cfg.n_s} n_t={cfg.n_t} c_s={cfg.c_s} "
                           f"c_t={cfg.c_t}: " + "; ".join(problems))


# -- files --------------------------------------------------------------------------------------

def _load(path: str | Path, device: str = "cpu") -> Any:
    """torch.load(weights_only=True) of a regular file (a FIFO or device is refused unopened)."""
    try:
        with open_regular(path, "checkpoint") as f:
            return torch.load(f, map_location=device, weights_only=True)
    except FileError as e:
        raise ConvertError(str(e)) from None
    except Exception as e:  # torch.load raises many kinds (UnpicklingError, RuntimeError, EOFError...)
        if "Unsupported global" in str(e):
            raise ConvertError(f"{path}: holds objects beyond tensors, which weights_only=True refuses; save "
                               f"its state_dict alone with torch.save and convert that") from None
        raise ConvertError(f"{path}: not a readable torch checkpoint (truncated, corrupt, or not written by "
                           f"torch.save: {type(e).__name__})") from None


def save_model_file(path: str | Path, preset: str, overrides: dict[str, Any], state: dict[str, Tensor]) -> None:
    """Our model file, written atomically: format, preset, overrides (plain values), state dict."""
    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()}
    with atomic_file(path) as f:
        torch.save({"format": FORMAT, "preset": preset, "overrides": plain, "model": state}, f)


def kind(obj: Any) -> str | None:
    """Which of our kinds a loaded checkpoint is (MODEL_FILE, TRAINER_CHECKPOINT, OPENSTL_FILE), or None."""
    if not isinstance(obj, dict):
        return None
    if obj.get("format") == FORMAT:
        return MODEL_FILE
    if {"config", "model", "version"} <= obj.keys():
        return TRAINER_CHECKPOINT
    return OPENSTL_FILE if any(str(k).startswith("hid.") for k in _openstl_state(obj)) else None


def file_kind(path: str | Path) -> str | None:
    """The kind of the checkpoint at path, read on the meta device (no memory for its tensors); None
    for anything else (not a torch file, unreadable)."""
    try:
        return kind(_load(path, device="meta"))
    except ConvertError:
        return None


def _model_of(obj: dict, path: str | Path) -> tuple[str, dict[str, Any], Any]:
    """(preset, overrides, state dict) named by our model file or a trainer checkpoint, checked."""
    if kind(obj) == MODEL_FILE:
        preset, overrides = obj.get("preset"), obj.get("overrides")
        if not isinstance(preset, str) or not isinstance(overrides, dict) or not all(
                isinstance(k, str) for k in overrides):
            raise ConvertError(f"{path}: a malformed model file (expected preset: a name, overrides: a "
                               f"mapping of model fields); write it again with python -m simvp_core.convert")
        return preset, overrides, obj.get("model")
    from simvp_core.config import TrainConfig, fields_in  # a trainer checkpoint: its config names the model

    config = obj["config"] if isinstance(obj["config"], dict) else {}
    try:  # (its other fields may be an older version's: only the model's matter here)
        cfg = TrainConfig.from_dict({k: v for k, v in config.items() if k in fields_in("model")}) if config else None
    except (ValueError, AttributeError) as e:
        raise ConvertError(f"{path}: {e}") from None
    epoch, epochs = obj.get("epoch"), config.get("epochs")
    if cfg is None or not all(isinstance(n, int) and not isinstance(n, bool) for n in (epoch, epochs)) or \
            not 0 <= epoch <= epochs:
        raise ConvertError(f"{path}: a malformed trainer checkpoint (its config, or epoch {str(epoch)[:24]} "
                           f"outside [0, epochs]); use a {CHECKPOINT_FILE} written by simvp_core.train")
    return cfg.preset, cfg.model_overrides(), obj["model"]


def load_model(path: str | Path) -> tuple[SimVP, str, dict[str, Any]]:
    """(model with the weights loaded, preset, overrides) of our model file or a trainer checkpoint;
    ConvertError (one line) for anything malformed: names, types, shapes, complex weights."""
    obj = _load(path)
    found = kind(obj)
    if found == OPENSTL_FILE:
        raise ConvertError(f"{path}: an OpenSTL checkpoint; convert it first: python -m simvp_core.convert "
                           f"from-openstl {path} OUT")
    if found is None:
        raise ConvertError(f"{path}: not a SimVP model file or trainer checkpoint (expected the keys "
                           f"format, preset, overrides, model; or a {CHECKPOINT_FILE} of simvp_core.train)")
    preset, overrides, state = _model_of(obj, path)
    try:
        model = build_model(preset, **overrides)
        check_fits(model, state)
    except (ValueError, TypeError) as e:
        raise ConvertError(f"{path}: {e}") from None
    model.load_state_dict(state)
    return model, preset, overrides


def _openstl_state(obj: dict) -> dict:
    """The state dict of an OpenSTL file: Lightning's `state_dict` or the bare dict, `model.` dropped."""
    state = obj.get("state_dict", obj)
    if not isinstance(state, dict):
        return {}
    return {k.removeprefix(LIGHTNING_PREFIX): v for k, v in state.items()
            if isinstance(k, str) and isinstance(v, Tensor)}


def from_openstl(src: str | Path, out: str | Path, frame_size: tuple[int, int] = (64, 64)) -> tuple[str, dict]:
    """Convert an OpenSTL checkpoint into our model file; returns (preset, overrides)."""
    obj = _load(src)
    state = _openstl_state(obj) if isinstance(obj, dict) else {}
    if not state:
        raise ConvertError(f"{src}: no tensors found (expected an OpenSTL checkpoint: a state dict, or "
                           f"Lightning's with 'state_dict')")
    try:
        ours = convert_state(state, OPENSTL)
        cfg = infer_config(ours, frame_size)
        check_fits(SimVP(cfg), ours, source=OPENSTL)
    except ValueError as e:  # ConvertError included
        raise ConvertError(f"{src}: {e}") from None
    preset, overrides = preset_for(cfg)
    save_model_file(out, preset, overrides, ours)
    return preset, overrides


def to_openstl(src: str | Path, out: str | Path) -> str:
    """Convert our model file or trainer checkpoint to OpenSTL's Lightning layout; returns its model_type."""
    model, preset, _ = load_model(src)
    cfg = model.cfg
    if cfg.translator not in OPENSTL_MODEL_TYPES:
        instead = registry()[cfg.translator].openstl_instead
        raise ConvertError(f"{src}: translator {cfg.translator} (preset {preset}) has no OpenSTL counterpart; "
                           f"OpenSTL has {', '.join(OPENSTL_MODEL_TYPES)}" + (f"; use {instead}" if instead else ""))
    try:
        named = convert_state(model.state_dict(), OURS)
    except ConvertError as e:
        raise ConvertError(f"{src}: {e}") from None
    t, c, h, w = cfg.in_shape
    hyper = {"model_type": OPENSTL_MODEL_TYPES[cfg.translator], "in_shape": [t, c, h, w], "hid_S": cfg.c_s,
             "hid_T": cfg.c_t, "N_S": cfg.n_s, "N_T": cfg.n_t, "mlp_ratio": cfg.mlp_ratio}
    with atomic_file(out) as f:
        torch.save({"state_dict": {LIGHTNING_PREFIX + k: v for k, v in named.items()},
                    "hyper_parameters": hyper}, f)
    return hyper["model_type"]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m simvp_core.convert",
                                     description="Convert SimVP checkpoints to and from OpenSTL's.")
    sub = parser.add_subparsers(dest="direction", required=True)
    into = sub.add_parser("from-openstl", help="OpenSTL checkpoint (Lightning .ckpt or state dict) -> our model file")
    into.add_argument("ckpt")
    into.add_argument("out")
    into.add_argument("--overwrite", action="store_true", help="replace OUT even if it is CKPT or another kind of file")
    into.add_argument("--frame-size", type=int, nargs=2, default=[64, 64], metavar=("H", "W"),
                      help="frame height and width the model is for (not in the weights; default 64 64)")
    back = sub.add_parser("to-openstl", help="our model file or trainer checkpoint -> OpenSTL's Lightning layout "
                          "{'state_dict': {'model.<name>': tensor}, 'hyper_parameters': SimVP_Model's kwargs}")
    back.add_argument("ckpt")
    back.add_argument("out")
    back.add_argument("--overwrite", action="store_true", help="replace OUT even if it is CKPT or another kind of file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        writes = MODEL_FILE if args.direction == "from-openstl" else OPENSTL_FILE
        check_output(args.out, [args.ckpt], writes, file_kind, args.overwrite)
        if args.direction == "from-openstl":
            preset, overrides = from_openstl(args.ckpt, args.out, tuple(args.frame_size))
            print(f"wrote {args.out}: preset {preset}" + (f", overrides {overrides}" if overrides else ""))
        else:
            model_type = to_openstl(args.ckpt, args.out)
            print(f"wrote {args.out}: OpenSTL SimVP_Model(model_type={model_type!r}) state dict, 'model.' prefixed")
    except (ConvertError, FileError) as e:
        print_error(e)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
