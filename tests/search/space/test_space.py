"""search.space: shipped spaces are valid and match the paper; broken ones are refused with file, key and fix."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
import yaml

from search.space import SMOKE_CAPS, SpaceError, explain, load_space, optuna_space, parse_space, scale_to_smoke
from simvp_core.models import resolve_model_config

REPO = Path(__file__).resolve().parents[3]
SPACES = sorted((REPO / "spaces").glob("*.yaml"))
BROKEN = sorted((Path(__file__).parent / "broken_spaces").glob("*.yaml"))

# Reference numbers (MSE, SSIM) of ../shared/reference/simvp.md section 6, keyed by the searched values.
PAPER = {
    "table1_augmentation.yaml": {("crop+flip",): (72.3073, 0.8364), ("crop",): (71.7384, 0.83259),
                                 ("none",): (41.2836, 0.90222)},
    "table2_activation.yaml": {("gelu",): (41.2836, 0.90222), ("starrelu",): (41.2322, 0.90244)},
    "table3_loss.yaml": {(0.0, 0.0): (41.2322, 0.90244), (0.5, 0.0): (41.0523, 0.90474),
                         (0.5, 0.1): (40.9828, 0.90452)},
    "table4_epochs_batch.yaml": {
        (100, 32, 0.0): (41.0523, 0.90474), (100, 32, 0.1): (40.9828, 0.90452),
        (100, 32, 0.5): (41.0197, 0.90448),
        (100, 16, 0.0): (40.0263, 0.90715), (100, 16, 0.1): (40.01, 0.90706),
        (200, 16, 0.0): (34.4117, 0.92243), (200, 16, 0.1): (34.4377, 0.92262)},
    "table5_models.yaml": {
        ("poolformer", 0.0): (42.5548, 0.90001), ("poolformer", 0.1): (42.527, 0.8997),
        ("incepu", 0.0): (39.1267, 0.9119), ("incepu", 0.1): (39.1313, 0.9118),
        ("simvpv2", 0.0): (34.4117, 0.92243), ("simvpv2", 0.1): (34.4377, 0.92262),
        ("simvpv2-l", 0.0): (29.8718, 0.93976)},
}


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def reached(spec, match: dict) -> bool:
    """Some trial (grid point or listed point) has every value of `match`."""
    trials = spec.grid_points() if spec.algorithm == "grid" else spec.points_to_evaluate
    return any(all(getattr(spec.trial_config(t), k) == v for k, v in match.items()) for t in trials)


# ---------------------------------------------------------------- shipped spaces


def test_every_expected_space_is_shipped():
    names = {p.name for p in SPACES}
    assert set(PAPER) | {"loss.yaml", "full.yaml", "smoke.yaml"} <= names


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_shipped_space_loads_explains_and_reaches_its_published_rows(path):
    spec = load_space(path)
    text = explain(spec)
    assert spec.experiment in text and f"{spec.total_trials()} trial(s)" in text
    for point in spec.grid_points():
        spec.trial_config(point)
    for row in spec.published:
        assert reached(spec, row["match"]), row
    assert parse_space(spec.to_dict(), spec.path) == spec


@pytest.mark.parametrize("name", sorted(PAPER))
def test_table_spaces_publish_the_papers_numbers(name):
    spec = load_space(REPO / "spaces" / name)
    got = {tuple(row["match"][n] for n in spec.names): (row["mse"], row["ssim"]) for row in spec.published}
    assert got == PAPER[name]
    assert {row["source"] for row in spec.published} == {f"Table {name[5]}"}


@pytest.mark.parametrize("name", ["table1_augmentation.yaml", "table2_activation.yaml",
                                  "table3_loss.yaml", "table4_epochs_batch.yaml"])
def test_table_1_to_4_train_simvpv2_at_the_papers_size(name):
    spec = load_space(REPO / "spaces" / name)
    assert (spec.algorithm, spec.scheduler, spec.repeats) == ("grid", "none", 1)
    for point in spec.grid_points():
        cfg = spec.trial_config(point)
        assert (cfg.preset, cfg.lr) == ("simvpv2", 1e-3)
        assert cfg.augment == "none" or "augment" in spec.names
        model = resolve_model_config(cfg.preset, **cfg.model_overrides())
        assert (model.translator, model.n_s, model.n_t, model.c_s, model.c_t) == ("gsta", 4, 4, 32, 256)


def test_table1_and_2_use_mse_only_for_100_epochs_at_batch_32():
    t1 = load_space(REPO / "spaces/table1_augmentation.yaml")
    assert set(t1.space[0].values) == {"none", "crop", "crop+flip"} and t1.base.act == "gelu"
    t2 = load_space(REPO / "spaces/table2_activation.yaml")
    assert [p.name for p in t2.space] == ["act"] and set(t2.space[0].values) == {"gelu", "starrelu"}
    for spec in (t1, t2):
        cfg = spec.base
        assert (cfg.epochs, cfg.batch_size, cfg.lambda_gdl, cfg.lambda_ddr) == (100, 32, 0.0, 0.0)


def test_table3_runs_exactly_the_papers_three_pairs():
    spec = load_space(REPO / "spaces/table3_loss.yaml")
    assert spec.grid_points() == [{"lambda_gdl": 0.0, "lambda_ddr": 0.0}, {"lambda_gdl": 0.5, "lambda_ddr": 0.0},
                                  {"lambda_gdl": 0.5, "lambda_ddr": 0.1}]
    assert spec.num_samples == 3
    assert (spec.base.act, spec.base.epochs, spec.base.batch_size) == ("starrelu", 100, 32)


def test_table4_runs_the_papers_seven_rows_in_blocks():
    spec = load_space(REPO / "spaces/table4_epochs_batch.yaml")
    rows = {(p["epochs"], p["batch_size"], p["lambda_ddr"]) for p in spec.grid_points()}
    assert rows == set(PAPER["table4_epochs_batch.yaml"]) and spec.num_samples == 7
    assert spec.blocks == ("epochs", "batch_size") and spec.scheduler == "none"
    assert (spec.base.lambda_gdl, spec.base.act) == (0.5, "starrelu")


def test_table5_compares_four_presets_at_200_epochs_batch_16():
    spec = load_space(REPO / "spaces/table5_models.yaml")
    configs = [spec.trial_config(p) for p in spec.grid_points()]
    assert {c.preset for c in configs} == {"poolformer", "incepu", "simvpv2", "simvpv2-l"}
    assert {(c.epochs, c.batch_size, c.lambda_gdl, c.act) for c in configs} == {(200, 16, 0.5, "starrelu")}
    assert {c.lambda_ddr for c in configs} == {0.0, 0.1} and spec.blocks == ("preset",)
    large = resolve_model_config("simvpv2-l")
    assert (large.n_t, large.c_s, large.c_t) == (8, 64, 512)


def test_loss_and_full_are_optuna_searches_with_asha():
    loss = load_space(REPO / "spaces/loss.yaml")
    assert (loss.algorithm, loss.scheduler, loss.max_epochs) == ("optuna", "asha", 100)
    assert {(p["lambda_gdl"], p["lambda_ddr"]) for p in loss.points_to_evaluate} == {
        (0.0, 0.0), (0.5, 0.0), (0.5, 0.1), (0.5, 0.5)}
    full = load_space(REPO / "spaces/full.yaml")
    params = {p.name: p for p in full.space}
    assert {"preset", "act", "augment", "batch_size", "lambda_gdl", "lambda_ddr", "lr", "c_t"} <= set(params)
    assert (params["lr"].kind, params["lr"].low, params["lr"].high) == ("loguniform", 3e-4, 3e-3)
    assert (full.max_epochs, full.base.epochs, full.gpu) == (200, 200, 0.25)


def test_smoke_space_is_small_without_scaling():
    spec = load_space(REPO / "spaces/smoke.yaml")
    steps = spec.worst_case_epochs() * (spec.base.train_size // spec.base.batch_size)
    assert spec.total_trials() <= 4 and steps <= 4 * 448  # at most 4 trials of 448 steps
    assert (spec.cpu, spec.gpu) == (1.0, 0.0) and spec.sample_fallback
    assert spec.base.train_size <= 128 and spec.base.c_s <= 4 and spec.base.c_t <= 32


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_smoke_caps_trials_epochs_and_sizes(path):
    spec = scale_to_smoke(load_space(path))
    trials = spec.grid_points()
    assert spec.total_trials() <= 4 and len(trials) <= 4 and spec.num_samples <= 4
    assert (spec.repeats, spec.cpu, spec.gpu) == (1, 1.0, 0.0)
    assert spec.experiment.endswith("smoke") and spec.max_epochs <= 2
    for cfg in [spec.base] + [spec.trial_config(t) for t in trials]:
        for name, cap in SMOKE_CAPS.items():
            value = getattr(cfg, name)
            assert name in spec.names or (value is not None and value <= cap), (name, value)
    for p in spec.space:  # what a sampled trial can get
        if p.name in SMOKE_CAPS:
            assert max(p.values or (p.high,)) <= SMOKE_CAPS[p.name]
    assert spec.published == ()  # a 2-epoch toy is no comparison for the paper's numbers


def test_readme_example_is_a_valid_space():
    text = (REPO / "spaces/README.md").read_text()
    example = re.search(r"## An annotated example\n\n```yaml\n(.*?)```", text, re.S).group(1)
    spec = parse_space(yaml.safe_load(example), "README.md")
    assert spec.algorithm == "optuna" and any(p.when for p in spec.space)


# ---------------------------------------------------------------- broken spaces


def test_broken_corpus_is_large():
    assert len(BROKEN) >= 20


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_space_is_refused_with_file_key_and_expectation(path):
    key = re.match(r"# error: (.+)", path.read_text()).group(1).strip()
    with pytest.raises(SpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and f": {key}" in message
    assert "; expected " in message and "\n" not in message


def test_missing_file_is_a_space_error(tmp_path):
    with pytest.raises(SpaceError, match=r"nope\.yaml: .*; expected "):
        load_space(tmp_path / "nope.yaml")


def test_test_metric_message_says_never_select_on_test_set(tmp_path):
    path = write(tmp_path, "search: {algorithm: grid}\nmetric: test_ssim\n")
    with pytest.raises(SpaceError, match="never select on the test set"):
        load_space(path)


def test_unknown_field_suggests_the_closest(tmp_path):
    path = write(tmp_path, "search: {algorithm: optuna, num_samples: 2}\n"
                           "space:\n  lamda_ddr: {uniform: [0, 1]}\n")
    with pytest.raises(SpaceError, match="did you mean 'lambda_ddr'"):
        load_space(path)


# ---------------------------------------------------------------- semantics on inline spaces


def test_grid_points_apply_conditions_and_repeats(tmp_path):
    spec = load_space(write(tmp_path, """
base: {seed: 7}
space:
  preset: {grid: [incepu, simvpv2]}
  act: {grid: [gelu, starrelu], when: {preset: simvpv2}}
  lambda_gdl: {grid: [0, 0.5]}
search: {algorithm: grid}
repeats: 2
"""))
    points = spec.grid_points()
    configs = {("incepu", None, 0.0), ("incepu", None, 0.5)} | {
        ("simvpv2", act, gdl) for act in ("gelu", "starrelu") for gdl in (0.0, 0.5)}
    assert len(points) == 12 == spec.num_samples
    for seed in (7, 8):
        got = [(p["preset"], p.get("act"), p["lambda_gdl"]) for p in points if p["seed"] == seed]
        assert sorted(got, key=str) == sorted(configs, key=str)
    assert all("act" not in p for p in points if p["preset"] == "incepu")
    assert spec.grid_points() == points
    assert spec.trial_config(points[-1]).seed in (7, 8)


def test_grid_without_repeats_has_no_seed_and_an_empty_space_is_one_trial(tmp_path):
    spec = load_space(write(tmp_path, "space:\n  act: {grid: [gelu, starrelu]}\nsearch: {algorithm: grid}\n"))
    assert spec.grid_points() == [{"act": "gelu"}, {"act": "starrelu"}]
    single = load_space(write(tmp_path, "search: {algorithm: grid}\nrepeats: 3\n", "base.yaml"))
    assert [p["seed"] for p in single.grid_points()] == [42, 43, 44]


@pytest.mark.parametrize("algorithm", ["optuna", "random"])
def test_repeats_work_with_a_sampler_and_count_in_the_plan(tmp_path, algorithm, monkeypatch):
    text = (f"base: {{epochs: 5}}\nsearch: {{algorithm: {algorithm}, num_samples: 4}}\n"
            "space:\n  lambda_gdl: {uniform: [0.0, 1.0]}\nrepeats: 3\n")
    spec = load_space(write(tmp_path, text))
    assert (spec.repeats, spec.num_samples, spec.total_trials(), spec.worst_case_epochs()) == (3, 4, 12, 60)
    assert "total: 12 trial(s), at most 60 trial-epochs" in explain(spec)
    monkeypatch.setenv("SIMVP_MAX_TRIALS", "11")
    over = r"search\.num_samples: 4 samples x repeats 3 = 12 trials is over the trial cap"
    with pytest.raises(SpaceError, match=over):
        load_space(write(tmp_path, text))


def test_smoke_of_a_large_grid_keeps_four_spread_points(tmp_path):
    spec = load_space(write(tmp_path, """
space:
  batch_size: {grid: [16, 32]}
  lambda_ddr: {grid: [0.0, 0.1, 0.2, 0.3, 0.4]}
search: {algorithm: grid}
repeats: 2
"""))
    smoke = scale_to_smoke(spec)
    points = smoke.grid_points()
    assert [p["lambda_ddr"] for p in points] == [0.0, 0.1, 0.3, 0.4]  # 5 merged configs -> first, .., last
    assert {p["batch_size"] for p in points} == {8} and "seed" not in points[0]


def test_yaml_reads_exponent_floats_and_defaults(tmp_path):
    spec = load_space(write(tmp_path, """
base: {epochs: 20}
space:
  lr: {loguniform: [1e-4, 1e-2]}
search: {algorithm: random, num_samples: 3}
scheduler: {type: asha}
metric: val_ssim
"""))
    assert (spec.space[0].low, spec.space[0].high) == (1e-4, 1e-2)
    assert (spec.mode, spec.grace_period, spec.reduction_factor, spec.max_epochs) == ("max", 2, 3, 20)
    assert (spec.experiment, spec.cpu, spec.gpu, spec.max_failures) == ("space", 1.0, 0.0, 1)
    assert spec.keep_checkpoints == "best"


def test_keep_checkpoints_round_trips_and_a_resume_may_change_it(tmp_path):
    """What a finished search keeps is not what it searches: the fingerprint a --resume must match
    leaves it out, while the spec itself keeps it."""
    text = "space:\n  lr: {grid: [0.01, 0.02]}\nsearch: {algorithm: grid}\n"
    kept_best = load_space(write(tmp_path, text))
    kept_none = load_space(write(tmp_path, text + "keep_checkpoints: none\n"))
    assert (kept_best.keep_checkpoints, kept_none.keep_checkpoints) == ("best", "none")
    assert parse_space(kept_none.to_dict(), kept_none.path) == kept_none
    assert kept_none.fingerprint() == kept_best.fingerprint()
    assert "keep_checkpoints none" in explain(kept_none)
    wider = load_space(write(tmp_path, text.replace("0.02", "0.03")))
    assert wider.fingerprint() != kept_best.fingerprint()


CONDITIONAL = """
space:
  preset: {choice: [incepu, poolformer, simvpv2]}
  act: {choice: [gelu, starrelu], when: {preset: [poolformer, simvpv2]}}
  c_t: {choice: [64, 128], when: {act: starrelu}}
  lr: {loguniform: [3.0e-4, 3.0e-3]}
  lambda_ddr: {uniform: [0.0, 0.5], step: 0.1}
  n_t: {int: [2, 8], step: 2}
search: {algorithm: ALGO, num_samples: 8, seed: 3}
"""


def check_sample(params: dict) -> None:
    """A sampled trial honours the conditions and bounds of CONDITIONAL."""
    assert ("act" in params) == (params["preset"] != "incepu")
    assert ("c_t" in params) == (params.get("act") == "starrelu")
    assert 3e-4 <= params["lr"] <= 3e-3 and params["n_t"] in (2, 4, 6, 8)
    assert round(params["lambda_ddr"], 6) in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


def sample(spec, sampler, n: int = 40) -> list[dict]:
    """n trials of the space's define-by-run function, each a valid trial config."""
    define = optuna_space(spec)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=sampler)
    for point in spec.points_to_evaluate:
        study.enqueue_trial(dict(point))
    params = []
    for _ in range(n):
        trial = study.ask()
        assert define(trial) is None
        check_sample(trial.params)
        spec.trial_config(trial.params)
        params.append(trial.params)
        study.tell(trial, 0.0)
    return params


@pytest.mark.parametrize("algo", ["optuna", "random"])
def test_optuna_space_suggests_conditional_params_only_when_they_apply(tmp_path, algo):
    spec = load_space(write(tmp_path, CONDITIONAL.replace("ALGO", algo)))
    seen = {(p["preset"], p.get("act")) for p in sample(spec, optuna.samplers.RandomSampler(seed=0))}
    assert {("incepu", None), ("simvpv2", "starrelu"), ("poolformer", "gelu")} <= seen


def test_random_search_is_seeded_and_starts_with_the_listed_points(tmp_path):
    """Algorithm random: Optuna's RandomSampler over the same define-by-run space, points first."""
    spec = load_space(write(tmp_path, CONDITIONAL.replace("ALGO", "random").replace(
        "seed: 3}", "seed: 3, points_to_evaluate: [{preset: incepu, lr: 1.0e-3, lambda_ddr: 0.2, n_t: 4}]}")))
    params = sample(spec, optuna.samplers.RandomSampler(seed=spec.seed), 12)
    assert params[0] == {"preset": "incepu", "lr": 1e-3, "lambda_ddr": 0.2, "n_t": 4}
    assert sample(spec, optuna.samplers.RandomSampler(seed=spec.seed), 12) == params
    assert {spec.trial_config(p).c_t for p in params} <= {None, 64, 128}  # None: the preset's own c_t


def test_trial_config_validates_and_drops_none(tmp_path):
    spec = load_space(write(tmp_path, CONDITIONAL.replace("ALGO", "optuna")))
    cfg = spec.trial_config({"preset": "incepu", "act": None, "lr": 1e-3, "n_t": 4, "lambda_ddr": 0.2})
    assert (cfg.preset, cfg.act, cfg.n_t) == ("incepu", "gelu", 4)
    with pytest.raises(ValueError, match="act"):
        spec.trial_config({"act": "relu"})
    with pytest.raises(ValueError, match="not a TrainConfig field"):
        spec.trial_config({"learning_rate": 1e-3})


def test_explain_shows_conditions_points_and_cost(tmp_path):
    spec = load_space(write(tmp_path, CONDITIONAL.replace("ALGO", "optuna").replace(
        "seed: 3}", "seed: 3, points_to_evaluate: [{preset: simvpv2, act: starrelu, c_t: 128}]}")
        + "scheduler: {type: asha, grace_period: 5}\n"))
    text = explain(spec)
    assert "when preset in ['poolformer', 'simvpv2']" in text and "when act=starrelu" in text
    assert "preset=simvpv2 act=starrelu c_t=128" in text
    assert "asha (grace_period 5, reduction_factor 3, max_epochs 100)" in text
    assert "8 trial(s), at most 800 trial-epochs" in text


def test_the_optuna_space_pickles_so_ray_can_save_the_searcher():
    import pickle

    define = optuna_space(load_space(REPO / "spaces/loss.yaml"))
    assert pickle.loads(pickle.dumps(define)) == define


def test_a_new_trainconfig_field_is_searchable_with_its_own_bounds(tmp_path):
    """weight_decay was declared in TrainConfig only: the space file accepts it and checks its bounds."""
    spec = load_space(write(tmp_path, "space:\n  weight_decay: {loguniform: [1.0e-6, 1.0e-2]}\n"
                                      "search: {algorithm: optuna, num_samples: 2}\n"))
    assert spec.trial_config({"weight_decay": 1e-4}).weight_decay == 1e-4
    with pytest.raises(SpaceError, match=r"space\.weight_decay\.low: got -1\.0; expected a number in \[0, 1\]"):
        load_space(write(tmp_path, "space:\n  weight_decay: {uniform: [-1.0, 0.0]}\n"
                                   "search: {algorithm: optuna, num_samples: 2}\n", "bad.yaml"))


def test_importing_the_space_package_loads_neither_torch_nor_ray():
    import subprocess
    import sys

    code = "import sys, search.space; print(sorted(m for m in ('torch', 'ray', 'optuna') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_budget_and_a_warm_start_are_kept_and_leave_other_spaces_fingerprints_alone(tmp_path):
    body = "search: {algorithm: optuna, num_samples: 4}\nspace: {lr: {loguniform: [0.001, 0.01]}}\n"
    spec = load_space(write(tmp_path, body + "budget: {params_m: 10, gmacs: 3}\nwarm_start: [runs/a, b]\n"))
    plain = load_space(write(tmp_path, body, "plain.yaml"))
    assert spec.budget == (("params_m", 10.0), ("gmacs", 3.0)) and spec.warm_start == ("runs/a", "b")
    assert parse_space(spec.to_dict(), spec.path) == spec
    assert scale_to_smoke(spec).budget == spec.budget and scale_to_smoke(spec).warm_start == spec.warm_start
    assert not {"budget", "warm_start"} & set(plain.to_dict())  # a resumed older search still matches
    assert spec.fingerprint() != plain.fingerprint()
    assert "budget: params <= 10M, GMACs <= 3 per sequence; configurations over it are never trained" in explain(spec)
