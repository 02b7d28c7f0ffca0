"""Fault injection for the end-to-end tests, kept out of the production trainable:
`with_faults(train_trial, parse_faults("raise_once_at_epoch=2@lr=0.005"))` is a trainable that
applies the faults before the trainer's epochs, for search.run.main(argv, trainable=...).

raise_once_at_epoch=E raises RuntimeError once per trial before epoch E; raise_at_epoch=E raises
there on every attempt; nan_at_epoch=E sets the weights to NaN before epoch E (the trainer then
diverges); sleep_per_epoch=S sleeps S seconds before every epoch. `@param=value` limits a fault
to the trials whose searched param has that value.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray.cloudpickle
from ray import tune

from simvp_core.trainer import Trainer

ACTIONS = ("raise_once_at_epoch", "raise_at_epoch", "nan_at_epoch", "sleep_per_epoch")


@dataclass(frozen=True)
class Fault:
    """`action=value[@param=value]`, applied to trials whose param matches."""

    action: str
    value: float
    match: tuple[str, str] | None = None

    def applies(self, params: dict[str, Any]) -> bool:
        return self.match is None or str(params.get(self.match[0])) == self.match[1]


def parse_faults(text: str) -> tuple[Fault, ...]:
    """Faults from e.g. "raise_once_at_epoch=2@seed=43,sleep_per_epoch=0.5"."""
    faults = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        spec, _, match = item.partition("@")
        action, _, value = spec.partition("=")
        key, _, wanted = match.partition("=")
        if action not in ACTIONS or not value or (match and not wanted):
            raise ValueError(f"fault {item!r}: expected ACTION=VALUE[@PARAM=VALUE] with ACTION one "
                             f"of {', '.join(ACTIONS)}")
        faults.append(Fault(action, float(value), (key, wanted) if match else None))
    return tuple(faults)


def inject(faults: tuple[Fault, ...], params: dict[str, Any], trainer: Trainer) -> None:
    """Apply the faults due before the trainer's next epoch."""
    epoch = trainer.epoch + 1
    for fault in (f for f in faults if f.applies(params)):
        if fault.action == "sleep_per_epoch":
            time.sleep(fault.value)
        elif fault.action == "nan_at_epoch" and epoch == fault.value:
            for p in trainer.model.parameters():
                p.data.fill_(math.nan)
        elif fault.action.startswith("raise") and epoch == fault.value:
            marker = Path(tune.get_context().get_trial_dir()) / "fault_raised"
            if fault.action == "raise_at_epoch" or not marker.exists():
                marker.touch()
                raise RuntimeError(f"injected fault before epoch {epoch}")


def with_faults(trainable: Callable[..., None], faults: tuple[Fault, ...]) -> Callable[..., None]:
    """`trainable` with `faults` applied before every epoch of its Trainer (in the trial's process)."""
    def faulty(config: dict[str, Any], **kwargs: Any) -> None:
        train_epoch = Trainer.train_epoch

        def train_epoch_with_faults(trainer: Trainer) -> dict:
            inject(faults, config, trainer)
            return train_epoch(trainer)

        Trainer.train_epoch = train_epoch_with_faults
        try:
            trainable(config, **kwargs)
        finally:
            Trainer.train_epoch = train_epoch

    faulty.__name__ = trainable.__name__  # Tuner.restore checks the trainable by its name
    return faulty


# the trial processes cannot import this test module: ship its functions with the trainable
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
