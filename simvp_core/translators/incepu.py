"""IncepU, SimVP v1's translator: an Inception U-Net of n_t blocks down and n_t up."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from simvp_core.translators import PAPER_SIZE, Translator, count_blocks, weight_shape

if TYPE_CHECKING:
    from simvp_core.presets import ModelConfig


def check(cfg: ModelConfig) -> None:
    """The U needs a down and an up block, and its blocks work at width c_t // 2."""
    if cfg.n_t < 2:
        raise ValueError(f"translator incepu needs n_t >= 2 (a down and an up block), got n_t={cfg.n_t}")
    if cfg.c_t < 2:
        raise ValueError(f"translator incepu needs c_t >= 2 (it works at width c_t // 2), got c_t={cfg.c_t}")


def read_sizes(state: Mapping[str, Any]) -> dict[str, Any]:
    """Width, n_t and c_t of the down path (it has no MLP: mlp_ratio stays the preset's)."""
    return {"width": weight_shape(state, "translator.down.0.reduce.weight")[1],
            "n_t": count_blocks(state, "translator.down."),
            "c_t": weight_shape(state, "translator.down.0.branches.0.0.weight")[0]}


TRANSLATOR = Translator(
    name="incepu",
    network=f"{__name__}_net",
    presets={"incepu": PAPER_SIZE},
    read_sizes=read_sizes,
    check=check,
    openstl="IncepU",
    openstl_rules=(
        ("translator.down.{i}.reduce.", "hid.enc.{i}.conv1."),
        ("translator.down.{i}.branches.{j}.0.", "hid.enc.{i}.layers.{j}.conv."),
        ("translator.down.{i}.branches.{j}.1.", "hid.enc.{i}.layers.{j}.norm."),
        ("translator.up.{i}.reduce.", "hid.dec.{i}.conv1."),
        ("translator.up.{i}.branches.{j}.0.", "hid.dec.{i}.layers.{j}.conv."),
        ("translator.up.{i}.branches.{j}.1.", "hid.dec.{i}.layers.{j}.norm."),
    ),
)
