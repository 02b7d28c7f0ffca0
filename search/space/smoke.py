"""Smoke scaling: any space, same shape, every trial tiny, so it runs on a 2-core CPU in minutes.

The caps are declared on the TrainConfig fields themselves (`smoke_max`).
"""

from __future__ import annotations

from typing import Any

from search.space.parse import parse_space
from search.space.schema import KINDS, VALUE_KINDS
from search.space.spec import SearchSpec, unique
from simvp_core.config import TrainConfig, declared

SMOKE_CAPS: dict[str, int] = declared("smoke_max")
SMOKE_TRIALS = 4


def scale_to_smoke(spec: SearchSpec) -> SearchSpec:
    """SMOKE_CAPS on every trial, <= 4 trials, 1 CPU; the paper's published values are dropped
    (a 2-epoch toy model is no comparison for them)."""
    data = _smoke_dict(spec.to_dict())
    scaled = parse_space(data, spec.path)
    points = scaled.grid_points()
    if scaled.algorithm == "grid" and len(points) > SMOKE_TRIALS:
        data["search"]["points_to_evaluate"] = _spread(points, SMOKE_TRIALS)
        scaled = parse_space(data, spec.path)
    return scaled


def _cap(name: str, value: Any) -> Any:
    cap = SMOKE_CAPS.get(name)
    return value if cap is None or value is None else min(value, cap)


def _smoke_dict(data: dict[str, Any]) -> dict[str, Any]:
    """The normalised space with SMOKE_CAPS applied to base, values, bounds, conditions, points, matches."""
    searched = set(data["space"])
    if not data["experiment"].endswith("smoke"):
        data["experiment"] += "-smoke"
    data["description"] = f"[smoke] {data['description']}".strip()
    for name, cap in SMOKE_CAPS.items():
        if name not in searched:
            value = data["base"].get(name, getattr(TrainConfig(), name))
            data["base"][name] = cap if value is None else min(value, cap)
    for name, body in data["space"].items():
        kind = next(k for k in body if k in KINDS)
        if kind in VALUE_KINDS:
            body[kind] = unique([_cap(name, v) for v in body[kind]])
        else:
            low, high = (_cap(name, b) for b in body[kind])
            if body.get("step") is not None:
                high = low + (high - low) // body["step"] * body["step"]
            if low == high:  # the whole range is above the cap: one value left
                del body[kind]
                body.pop("step", None)
                body["choice"] = [low]
            else:
                body[kind] = [low, high]
        for ref, allowed in body.get("when", {}).items():
            if isinstance(allowed, list):
                body["when"][ref] = unique([_cap(ref, v) for v in allowed])
            else:
                body["when"][ref] = _cap(ref, allowed)
    search = data["search"]
    search["points_to_evaluate"] = unique([{k: _cap(k, v) for k, v in p.items()}
                                            for p in search["points_to_evaluate"]])
    if "num_samples" in search:
        search["num_samples"] = min(search["num_samples"], SMOKE_TRIALS)
        search["points_to_evaluate"] = search["points_to_evaluate"][:SMOKE_TRIALS]
    if data["scheduler"]["type"] == "asha":
        data["scheduler"] = {"type": "asha", "grace_period": 1, "reduction_factor": 2,
                             "max_epochs": data["base"]["epochs"]}
    data.update(repeats=1, resources={"cpu": 1, "gpu": 0}, published=[])
    return data


def _spread(points: list[dict], k: int) -> list[dict]:
    """k points evenly spaced over the list, first and last included (a smoke grid still spans its values)."""
    return [points[round(i * (len(points) - 1) / (k - 1))] for i in range(k)]
