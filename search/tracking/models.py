"""Models in MLflow: a search's best model logged to its parent run and registered under the
search's name with the alias `best`, and models:/ and runs:/ URIs resolved back to our model file.

The logged model is MLflow's pytorch flavour in its `pt2` format (torch.export: loading it
unpickles nothing and needs neither our code nor its classes), so one line loads it anywhere:
`mlflow.pytorch.load_model("models:/<search>@best")`. Our own model file (simvp_core.convert:
preset, overrides, state dict, read with weights_only=True) travels beside it as an extra file;
that is what `--model-uri` hands to simvp_core, which never imports MLflow.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.tracking.store import PROBE_ENV, QUIET_ENV, environment, probe
from simvp_core.oneline import short_path

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

ALIAS = "best"
MODEL_NAME = "model"  # the logged model's name in the parent run
MODEL_FILE = "simvp_model.pt"  # our model file, among the logged model's extra files
EXTRA_FILES = "extra_files"  # where MLflow puts them in a model's folder
GIF_FOLDER = "best_model"  # the parent run's folder for the best model's animation
URI_FORMS = "models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/PATH"


class ModelUriError(ValueError):
    """A model URI that cannot be resolved to a model file: one line naming it and the fix."""


@contextlib.contextmanager
def _fluent(uri: str) -> Iterator[None]:
    """MLflow's module-level functions pointed at `uri` (and without progress bars) for the block;
    the environment's MLFLOW_TRACKING_URI (what they used before) back afterwards."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        with environment(QUIET_ENV):
            yield
    finally:
        mlflow.set_tracking_uri(before)


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """MLflow's own INFO lines (a store creating its tables) kept off the console for the block."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def registered(uri: str, name: str, run_id: str, trial_id: str) -> str | None:
    """The version of `name` registered from this parent run for this trial, if there is one."""
    from mlflow.tracking import MlflowClient

    versions = MlflowClient(uri).search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return next((v.version for v in versions if v.tags.get("trial") == trial_id), None)


def register_best(uri: str, run_id: str, name: str, model: nn.Module, example: np.ndarray,
                  model_file: Path, params: dict[str, str], tags: dict[str, str], description: str) -> str:
    """Log `model` to the parent run `run_id`, in its experiment (pytorch flavour, pt2,
    `model_file` beside it, signature (-1, 10, 1, 64, 64) float32, `example` as input example,
    pinned requirements, `params` such as preset and overrides) and register it as a new version
    of `name` with the alias `best`, `tags` and `description`; returns the version.

    `example` needs a batch of 2 or more: torch.export fixes a batch dimension of 1 to 1."""
    import mlflow
    import mlflow.pytorch
    import numpy as np
    import torch
    from mlflow.models import ModelSignature
    from mlflow.tracking import MlflowClient
    from mlflow.types import Schema, TensorSpec

    model = model.eval().cpu()
    example = np.ascontiguousarray(example, dtype=np.float32)
    spec = Schema([TensorSpec(np.dtype(np.float32), (-1, *example.shape[1:]))])
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}",
                    f"numpy=={np.__version__}"]
    client = MlflowClient(uri)
    logged = client.create_logged_model(client.get_run(run_id).info.experiment_id, name=MODEL_NAME,
                                        source_run_id=run_id, params=params, tags=tags)
    with _fluent(uri):
        info = mlflow.pytorch.log_model(
            model, name=MODEL_NAME, model_id=logged.model_id, run_id=run_id, serialization_format="pt2",
            signature=ModelSignature(inputs=spec, outputs=spec), input_example=example,
            pip_requirements=requirements, extra_files=[str(model_file)], registered_model_name=name,
            metadata=dict(tags), await_registration_for=60,
            # MLflow's trial run of the example through the reloaded model only warns when it fails,
            # and costs a second load and run of the export (half the logging time); the tests load
            # the registered model and compare its outputs instead
            validate_serving_input=False)
    version = str(info.registered_model_version)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.update_model_version(name, version, description=description)
    client.set_registered_model_alias(name, ALIAS, version)
    return version


def point_alias(uri: str, name: str, version: str) -> None:
    """Move `name`'s alias `best` to `version`."""
    from mlflow.tracking import MlflowClient

    MlflowClient(uri).set_registered_model_alias(name, ALIAS, version)


def attach_animation(uri: str, run_id: str, gif: Path) -> None:
    """The best model's animated predictions, in the parent run's best_model/ folder."""
    from mlflow.tracking import MlflowClient

    MlflowClient(uri).log_artifact(run_id, str(gif), artifact_path=GIF_FOLDER)


def model_tags(search: str, trial_id: str, metric: str, value: float, extra: dict[str, Any]) -> dict[str, str]:
    """The registered version's tags: which search, which trial, by which metric and its value."""
    return {"search": search, "trial": trial_id, "metric": metric, "value": f"{value:.6g}",
            **{k: _tag(v) for k, v in extra.items()}}


def _tag(value: Any) -> str:
    """A tag's text: floats to 6 significant digits, like `value`; lists and dicts as JSON."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def fetch_model_file(model_uri: str, tracking_uri: str, dest: Path) -> Path:
    """Our model file behind a models:/ or runs:/ URI, downloaded into `dest`: the file beside a
    model the search registered, or a file artifact itself (a model file or trainer checkpoint,
    checked by simvp_core when loaded). ModelUriError in one line otherwise."""
    if not model_uri.startswith(("models:/", "runs:/")) or model_uri.rstrip("/") in ("models:", "runs:"):
        raise ModelUriError(f"--model-uri {_cut(model_uri)!r}: expected {URI_FORMS}")
    check_store(tracking_uri)
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    try:
        # _fluent too: resolving models:/ consults MLflow's current store (else ./mlflow.db)
        with _fluent(tracking_uri), environment(PROBE_ENV), _quiet_logs():
            local = Path(download_artifacts(artifact_uri=model_uri, dst_path=str(dest),
                                            tracking_uri=tracking_uri, registry_uri=tracking_uri))
    except (MlflowException, OSError) as e:
        why = " ".join(str(getattr(e, "message", e)).split())[:110]
        raise ModelUriError(f"--model-uri {_cut(model_uri)}: not found in {_cut(tracking_uri)} ({why}); "
                            "see the registered models in the MLflow UI, or pass --tracking-uri") from None
    if local.is_file():
        return local
    found = local / EXTRA_FILES / MODEL_FILE
    if not found.is_file():
        raise ModelUriError(f"--model-uri {_cut(model_uri)}: a folder without {EXTRA_FILES}/{MODEL_FILE}, "
                            "so not a model a search registered; pass the URI of a model file or "
                            "checkpoint artifact, or of a search's model")
    return found


def _cut(text: str, limit: int = 60) -> str:
    """A URI in an error line: its middle cut when long, its end (the file or the name) kept."""
    return short_path(text, limit)


def check_store(tracking_uri: str) -> None:
    """The tracking store answers, without creating one: an sqlite:/// file must exist already."""
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise ModelUriError(f"--tracking-uri {_cut(tracking_uri)}: no MLflow store there (no such "
                                "file); pass the store the search logged to, e.g. sqlite:///runs/mlflow.db")
    reason = probe(tracking_uri)
    if reason:
        raise ModelUriError(f"--tracking-uri {_cut(tracking_uri)}: MLflow cannot be reached ({reason[:140]}); "
                            "start the server or pass another --tracking-uri")


__all__ = ["ALIAS", "MODEL_NAME", "MODEL_FILE", "ModelUriError", "registered", "register_best",
           "point_alias", "attach_animation", "model_tags", "fetch_model_file", "check_store"]
