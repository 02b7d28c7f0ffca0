"""The translator registry: each translator declared once, in its own module of this package.

A declaration module (torch-free) holds `TRANSLATOR = Translator(...)`: the name, the presets, the
rules a configuration must meet, the OpenSTL names; the network is in the module `network` names
(`<declaration>_net`), imported only when a model is built, so that the config, the presets and
the search space read the registry without torch. Declarations are found with pkgutil: adding a
translator is adding its two modules here (and a test), nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

# a simvp_core.presets.ModelConfig: not imported here, since presets reads this registry
ModelConfig = Any
NETWORK_SUFFIX = "_net"  # network modules: never imported by discovery (they import torch)

Rules = tuple[tuple[str, str], ...]
# paper Table 5: N_s = N_t = 4, C_s = 32, C_t = 256 (the "-L" size doubles N_t, C_s and C_t)
PAPER_SIZE: Mapping[str, int] = MappingProxyType({"n_s": 4, "n_t": 4, "c_s": 32, "c_t": 256})


def no_rules(cfg: ModelConfig) -> None:
    """A translator that builds from any valid size."""


@dataclass(frozen=True)
class Translator:
    """One translator: what it is called, how it is sized and checked, where its network is, and
    how OpenSTL names it."""

    name: str
    network: str  # module whose build(cfg: ModelConfig) -> nn.Module makes the translator
    presets: Mapping[str, Mapping[str, Any]]  # preset name -> its ModelConfig fields (not translator)
    # a state dict (our names) -> "width" (T * c_s) and the ModelConfig fields its weights show;
    # KeyError when the weights this translator would have are not there
    read_sizes: Callable[[Mapping[str, Any]], dict[str, Any]]
    check: Callable[[ModelConfig], None] = no_rules  # ValueError for sizes it cannot build
    openstl: str | None = None  # OpenSTL's SimVP_Model(model_type=...); None: OpenSTL has none
    openstl_instead: str | None = None  # without one: the translator to train for OpenSTL instead
    # (our name, OpenSTL's) of its weights; {i}, {j}: block indices; a name ending in "." is a
    # prefix whose rest (weight, bias, ...) is kept
    openstl_rules: Rules = ()

    def build(self, cfg: ModelConfig) -> nn.Module:
        """The translator network for `cfg`, importing its module (and torch) now."""
        return importlib.import_module(self.network).build(cfg)


def discover(package: str) -> dict[str, Translator]:
    """name -> Translator of every declaration module in `package`, in module-name order; network
    modules (`*_net`) and private ones (`_*`) are not imported."""
    found: dict[str, Translator] = {}
    owner: dict[tuple[str, str], str] = {}  # ("translator" or "preset", name) -> its module
    for info in sorted(pkgutil.iter_modules(importlib.import_module(package).__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name.endswith(NETWORK_SUFFIX):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        translator = getattr(module, "TRANSLATOR", None)
        if translator is None:  # a module the declarations share
            continue
        for kind, name in (("translator", translator.name), *(("preset", p) for p in translator.presets)):
            if (kind, name) in owner:
                raise RuntimeError(f"{module.__name__}: {kind} {name!r} is already declared by "
                                   f"{owner[kind, name]}; give it another name")
            owner[kind, name] = module.__name__
        found[translator.name] = translator
    return found


@cache
def registry() -> dict[str, Translator]:
    """name -> Translator of every translator shipped in simvp_core.translators."""
    return discover(__name__)


def weight_shape(state: Mapping[str, Any], key: str) -> tuple[int, ...]:
    """The shape of `state[key]` (a tensor or anything with .shape); KeyError naming it if absent."""
    if key not in state:
        raise KeyError(key)
    return tuple(state[key].shape)


def count_blocks(state: Mapping[str, Any], prefix: str) -> int:
    """How many numbered blocks `prefix<i>.` the keys of `state` hold."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({m.group(1) for k in state if (m := pattern.match(k))})


__all__ = ["Translator", "Rules", "PAPER_SIZE", "registry", "discover", "no_rules", "weight_shape", "count_blocks",
           "NETWORK_SUFFIX"]
