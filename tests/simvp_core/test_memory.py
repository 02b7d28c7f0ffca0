"""simvp_core.memory: the memory a configuration needs, estimated from its settings before anything
is allocated, refused in one line naming the setting to lower, and checked by the trainer and by
evaluate before they allocate."""

from __future__ import annotations

import pytest

from simvp_core import memory
from simvp_core.config import TrainConfig
from simvp_core.env import EnvError

TINY = dict(preset="simvpv2", c_s=4, c_t=8, n_t=2, train_size=8, val_size=4, test_size=4,
            batch_size=4, eval_batch_size=4, epochs=1, device="cpu")


@pytest.mark.parametrize("changes, lower", [
    ({"batch_size": 65_536}, "batch_size"), ({"val_size": 1_000_000}, "val_size"),
    ({"test_size": 1_000_000}, "test_size"), ({"eval_batch_size": 65_536}, "eval_batch_size"),
    ({"c_t": 8192, "n_t": 64}, "the model's c_t, n_t or c_s"),
])
def test_a_configuration_over_the_memory_is_refused_naming_the_setting(monkeypatch, changes, lower) -> None:
    monkeypatch.setenv(memory.ENV_LIMIT, "16000")  # a stated cap: the same answer on every machine
    estimate = memory.training(TrainConfig(**{**TINY, **changes}))
    assert estimate.total() > 16000 * 2**20 and estimate.largest().lower == lower
    with pytest.raises(memory.MemoryLimitError) as info:
        memory.check(estimate, "this training")
    message = str(info.value)
    assert f"lower {lower}" in message and "16.8 GB is $SIMVP_MEMORY_LIMIT_MB" in message
    assert len(message) <= 300 and "\n" not in message
    memory.check(memory.training(TrainConfig(**TINY)), "this training")  # the tiny one fits


def test_the_estimate_grows_with_each_size_and_the_default_needs_a_few_gigabytes() -> None:
    base = memory.training(TrainConfig(**TINY)).total()
    for field in ("batch_size", "val_size", "test_size", "c_t", "n_t"):
        assert memory.training(TrainConfig(**{**TINY, field: TINY[field] * 4})).total() > base, field
    default = memory.training(TrainConfig())
    assert 3e9 < default.total() < 12e9  # measured: about 2.2 GB RSS rise at batch 16, 4.4 at 32
    assert default.largest().lower == "batch_size"


def test_the_parameter_count_is_within_a_factor_one_and_a_half_for_every_preset() -> None:
    import torch

    from simvp_core.models import PRESETS, SimVP, count_params

    for name, cfg in PRESETS.items():
        with torch.device("meta"):
            counted = count_params(SimVP(cfg))
        assert counted / 1.5 < memory.parameters(cfg) < counted * 1.5, name


def test_a_wrong_cap_is_refused_and_a_cap_replaces_the_machines_figure(monkeypatch) -> None:
    monkeypatch.setenv(memory.ENV_LIMIT, "lots")
    with pytest.raises(EnvError, match=r"\$SIMVP_MEMORY_LIMIT_MB='lots': expected an integer"):
        memory.available()
    monkeypatch.setenv(memory.ENV_LIMIT, "100")
    assert memory.available() == (100 * 2**20, "$SIMVP_MEMORY_LIMIT_MB")
    monkeypatch.delenv(memory.ENV_LIMIT)
    room, source = memory.available()
    assert room > 0 and source in ("available on this machine", "left under this cgroup's memory.max")


def test_the_trainer_and_evaluate_refuse_before_they_load_anything(monkeypatch, tmp_path, capsys) -> None:
    from simvp_core import convert, evaluate
    from simvp_core.models import build_model
    from simvp_core.trainer import Trainer

    monkeypatch.setenv(memory.ENV_LIMIT, "4000")
    missing = tmp_path / "no_data_here"  # loading data from it would raise DataNotFoundError instead
    with pytest.raises(memory.MemoryLimitError, match="lower val_size"):
        Trainer(TrainConfig(**{**TINY, "val_size": 1_000_000}), data_dir=missing)
    model = build_model("simvpv2", c_s=4, c_t=8, n_t=2)
    convert.save_model_file(tmp_path / "model.pt", "simvpv2", {"c_s": 4, "c_t": 8, "n_t": 2}, model.state_dict())
    argv = ["--checkpoint", str(tmp_path / "model.pt"), "--data-dir", str(missing)]
    assert evaluate.main([*argv, "--test-size", "1000000"]) == 2
    assert "lower --test-size" in capsys.readouterr().err
    assert evaluate.main([*argv, "--test-size", "1000001"]) == 2
    assert "--test-size 1000001: expected an integer in [1, 1000000]" in capsys.readouterr().err
    assert not missing.exists()
