"""TrainConfig: the single source of truth is validated on construction and from plain values."""

import math

import pytest

from simvp_core.config import FIELD_TYPES, TrainConfig


def test_defaults_are_the_papers_settings():
    cfg = TrainConfig()
    assert (cfg.preset, cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed) == ("simvpv2", 100, 32, 1e-3, 42)
    assert (cfg.lambda_gdl, cfg.lambda_ddr, cfg.augment, cfg.train_size) == (0.0, 0.0, "none", 10_000)


@pytest.mark.parametrize("field,value,fragment", [
    ("preset", "resnet", "simvpv2"),
    ("act", "relu", "starrelu"),
    ("augment", "rotate", "crop+flip"),
    ("batch_size", 0, "batch_size must be >= 1"),
    ("lr", 0.0, "lr must be > 0"),
    ("lr", math.nan, "lr must be > 0"),
    ("lambda_ddr", -0.1, "lambda_ddr must be >= 0"),
    ("drop_path", 1.0, "drop_path must be in [0, 1)"),
    ("translator", "lstm", "gsta"),
])
def test_invalid_values_name_the_field_and_the_valid_choices(field, value, fragment):
    with pytest.raises(ValueError, match=None) as err:
        TrainConfig(**{field: value})
    assert fragment in str(err.value)


def test_from_dict_rejects_unknown_keys_and_wrong_types():
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({"batchsize": 16})
    with pytest.raises(ValueError, match="epochs must be a int"):
        TrainConfig.from_dict({"epochs": "ten"})
    with pytest.raises(ValueError, match="channels_last must be a bool"):
        TrainConfig.from_dict({"channels_last": 1})


def test_from_dict_coerces_integral_numbers_but_not_fractions():
    cfg = TrainConfig.from_dict({"epochs": 5.0, "lambda_gdl": 1, "c_t": None})
    assert cfg.epochs == 5 and isinstance(cfg.epochs, int)
    assert cfg.lambda_gdl == 1.0 and isinstance(cfg.lambda_gdl, float)
    with pytest.raises(ValueError):
        TrainConfig.from_dict({"epochs": 5.5})


def test_round_trip_through_a_dict():
    cfg = TrainConfig(preset="incepu", c_t=64, act="starrelu", lambda_gdl=0.5)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert set(cfg.to_dict()) == set(FIELD_TYPES)


def test_model_overrides_hold_only_what_was_set():
    assert TrainConfig().model_overrides() == {"act": "gelu"}
    assert TrainConfig(n_t=2, c_s=8).model_overrides() == {"n_t": 2, "c_s": 8, "act": "gelu"}
