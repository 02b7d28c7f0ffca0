"""`python -m simvp_core.zoo`: the model presets as a markdown table (size, params, GMACs).

Models are built on the meta device: shapes only, no memory or compute, so the 46M-parameter
preset costs nothing. GMACs count the convolutions and linear layers (what dominates), as
`torch.utils.flop_counter` does; norms, activations and pooling are not counted.
"""

from __future__ import annotations

import functools

import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from simvp_core.models import PRESETS, ModelConfig, SimVP, count_params, resolve_model_config


def gmacs_per_sequence(model: nn.Module) -> float:
    """Multiply-accumulates (in G) of one forward pass over one input sequence (batch of 1)."""
    param = next(model.parameters())
    x = torch.zeros(1, *model.cfg.in_shape, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2 / 1e9


@functools.cache
def model_cost(cfg: ModelConfig) -> tuple[int, float]:
    """(parameters, GMACs per sequence) of the model `cfg` describes, built on the meta device;
    cached, as a search asks about the same model configuration again and again."""
    with torch.device("meta"):
        model = SimVP(cfg)
    return count_params(model), gmacs_per_sequence(model)


def zoo_rows() -> list[dict]:
    """One row per preset: preset, translator, n_s, n_t, c_s, c_t, params (int), gmacs (float)."""
    rows = []
    for name, cfg in PRESETS.items():
        params, gmacs = model_cost(resolve_model_config(name))
        rows.append({"preset": name, "translator": cfg.translator, "n_s": cfg.n_s, "n_t": cfg.n_t,
                     "c_s": cfg.c_s, "c_t": cfg.c_t, "params": params, "gmacs": gmacs})
    return rows


def zoo_table(rows: list[dict]) -> str:
    """The rows as a markdown table, params in millions (3 decimals) and GMACs (2 decimals)."""
    table = pd.DataFrame(rows)
    table["params"] = table["params"] / 1e6
    digits = {"params": ".3f", "gmacs": ".2f"}
    floatfmt = [digits.get(column, "") for column in table.columns]
    table = table.rename(columns={"params": "params (M)", "gmacs": "GMACs / sequence"})
    return table.to_markdown(index=False, floatfmt=floatfmt)


def main() -> None:
    print(zoo_table(zoo_rows()))


if __name__ == "__main__":
    main()
