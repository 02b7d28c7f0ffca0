"""TrainConfig: each setting declared once, validated on construction and from plain values, and
everything else (CLI, resumable fields, smoke caps, plan) derived from those declarations."""

import math

import pytest
import yaml
from pydantic import ValidationError

from simvp_core.config import FIELD_TYPES, FP32, GROUPS, ConfigError, TrainConfig, choices, declared, fields_in, takes
from simvp_core.presets import ACTIVATIONS, PRESET_NAMES, TRANSLATORS
from simvp_core.train import apply_fp32, build_parser


def test_defaults_are_the_papers_settings():
    cfg = TrainConfig()
    assert (cfg.preset, cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed) == ("simvpv2", 100, 32, 1e-3, 42)
    assert (cfg.lambda_gdl, cfg.lambda_ddr, cfg.augment, cfg.train_size) == (0.0, 0.0, "none", 10_000)
    assert cfg.weight_decay == 0.0


@pytest.mark.parametrize("field,value,fragment", [
    ("preset", "resnet", "simvpv2"),
    ("act", "relu", "starrelu"),
    ("augment", "rotate", "crop+flip"),
    ("batch_size", 0, "batch_size must be an integer in [1, "),
    ("lr", 0.0, "lr must be a number in (0, "),
    ("lr", math.nan, "got nan"),
    ("lr", math.inf, "got inf"),
    ("weight_decay", -1e-4, "weight_decay must be a number in [0, "),
    ("lambda_ddr", -0.1, "lambda_ddr must be a number in [0, "),
    ("lambda_gdl", math.inf, "lambda_gdl"),
    ("drop_path", 1.0, "drop_path must be a number in [0, 1)"),
    ("translator", "lstm", "gsta"),
    ("epochs", 1_000_000, "epochs must be an integer in [1, 100000], got 1000000"),
])
def test_invalid_values_say_in_one_line_what_the_field_takes(field, value, fragment):
    with pytest.raises(ConfigError) as err:
        TrainConfig(**{field: value})
    assert fragment in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, ValueError)


def test_from_dict_rejects_unknown_keys_and_wrong_types():
    with pytest.raises(ValueError, match="unknown TrainConfig field 'batchsize' .did you mean 'batch_size'"):
        TrainConfig.from_dict({"batchsize": 16})
    with pytest.raises(ValueError, match=r"epochs must be an integer .*, got 'ten' \(str\)"):
        TrainConfig.from_dict({"epochs": "ten"})
    with pytest.raises(ValueError, match=r"compile must be one of eager, default, graphs, got True \(bool\)"):
        TrainConfig.from_dict({"compile": True})


def test_yaml_off_read_as_false_is_the_choice_off_where_a_field_has_it():
    values = yaml.safe_load("amp: off\nmemory_format: contiguous\ncompile: eager")
    assert values["amp"] is False  # YAML 1.1, as yaml.safe_load reads it
    cfg = TrainConfig.from_dict(values)
    assert (cfg.amp, cfg.memory_format, cfg.compile) == ("off", "contiguous", "eager")
    with pytest.raises(ValueError, match="amp must be one of auto, bf16, off, got True"):
        TrainConfig.from_dict({"amp": True})  # on: which of auto and bf16 is unclear
    with pytest.raises(ValueError, match="memory_format must be one of .*, got False"):
        TrainConfig.from_dict({"memory_format": False})  # no choice 'off' there


def test_from_dict_coerces_integral_numbers_but_not_fractions():
    cfg = TrainConfig.from_dict({"epochs": 5.0, "lambda_gdl": 1, "c_t": None})
    assert cfg.epochs == 5 and isinstance(cfg.epochs, int)
    assert cfg.lambda_gdl == 1.0 and isinstance(cfg.lambda_gdl, float)
    with pytest.raises(ValueError):
        TrainConfig.from_dict({"epochs": 5.5})


def test_round_trip_through_a_dict_and_frozen():
    cfg = TrainConfig(preset="incepu", c_t=64, act="starrelu", lambda_gdl=0.5)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg and hash(cfg) == hash(TrainConfig(**cfg.to_dict()))
    assert list(cfg.to_dict()) == list(FIELD_TYPES)
    with pytest.raises(ValidationError):  # frozen
        cfg.epochs = 3


def test_replace_validates_like_construction():
    cfg = TrainConfig()
    assert cfg.replace(epochs=3, weight_decay=1e-4) == TrainConfig(epochs=3, weight_decay=1e-4)
    with pytest.raises(ConfigError, match="epochs"):
        cfg.replace(epochs=0)


def test_model_overrides_hold_only_what_was_set():
    assert TrainConfig().model_overrides() == {"act": "gelu"}
    assert TrainConfig(n_t=2, c_s=8).model_overrides() == {"n_t": 2, "c_s": 8, "act": "gelu"}


def test_every_field_declares_its_group_help_and_bounds():
    groups = declared("group")
    assert set(groups) == set(FIELD_TYPES) and set(groups.values()) == set(GROUPS)
    for name, info in TrainConfig.model_fields.items():
        assert info.description, name
        base, _ = FIELD_TYPES[name]
        if base in (int, float):  # every number is bounded on both sides
            assert " in [" in takes(name) or " in (" in takes(name), (name, takes(name))
    assert (choices("preset"), choices("translator"), choices("act")) == (PRESET_NAMES, TRANSLATORS, ACTIVATIONS)


def test_the_execution_group_is_what_a_resume_may_change():
    assert fields_in("execution") == ("device", "eval_batch_size", "amp", "memory_format", "compile",
                                      "sync_every")
    assert fields_in("learning")[:4] == ("epochs", "batch_size", "lr", "weight_decay")


def test_smoke_caps_and_headline_are_declared_on_the_fields():
    assert declared("smoke_max") == {"n_t": 2, "c_s": 8, "c_t": 16, "train_size": 32, "val_size": 16,
                                     "test_size": 16, "epochs": 2, "batch_size": 8, "eval_batch_size": 16}
    assert set(declared("headline")) == {"preset", "act", "augment", "epochs", "batch_size", "lr",
                                         "lambda_gdl", "lambda_ddr"}


def test_the_cli_has_one_flag_per_field_typed_from_its_declaration():
    parser = build_parser()
    flags = {a.dest: a for a in parser._actions if a.dest in FIELD_TYPES}
    assert set(flags) == set(FIELD_TYPES)
    assert flags["act"].choices == ACTIVATIONS and flags["epochs"].type is int
    assert "Adam weight decay (L2 penalty)" in flags["weight_decay"].help
    args = vars(parser.parse_args(["--weight-decay", "1e-4", "--compile", "default", "--memory-format",
                                   "channels_last"]))
    cfg = TrainConfig(**{k: v for k, v in args.items() if k in FIELD_TYPES})
    assert (cfg.weight_decay, cfg.compile, cfg.memory_format) == (1e-4, "default", "channels_last")


@pytest.mark.parametrize("argv, expected", [
    (["--fp32"], FP32),
    (["--fp32", "--amp", "off"], FP32),  # the same value twice: no conflict
    (["--fp32", "--compile", "default"], {**FP32, "compile": "default"}),  # not one of --fp32's settings
    ([], {"amp": "auto", "memory_format": "auto"}),
])
def test_fp32_is_one_flag_for_the_settings_config_declares(argv, expected):
    parser = build_parser()
    args = apply_fp32(parser, vars(parser.parse_args(argv)))
    assert "fp32" not in args and {k: args[k] for k in expected} == expected
    assert FP32 == {"amp": "off", "memory_format": "contiguous"}


def test_fp32_with_a_contradicting_flag_is_one_line_exit_2(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit) as exit_:
        apply_fp32(parser, vars(parser.parse_args(["--fp32", "--amp", "bf16"])))
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert "--fp32 sets --amp off; drop --amp bf16 or --fp32" in err
