"""search.space limits: oversized grids, YAML bombs, huge files and long values are refused fast, in one short line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.space import SpaceError, limits, load_space
from search.space.spec import expand

REPO = Path(__file__).resolve().parents[3]
BROKEN = Path(__file__).parent / "broken_spaces"
# Files the corpus tests cannot take (test_schema reads every broken_spaces/*.yaml as YAML and knows
# which ones its schema rejects): checked here only.
LIMITS = BROKEN / "limits"
LINE = 300  # no error line longer than this

# Runs the dry run as this wrapper's only child, so RUSAGE_CHILDREN is that command's peak RSS (kB on Linux).
MEASURE = """
import resource, subprocess, sys, time
t = time.perf_counter()
r = subprocess.run([sys.executable, "-m", "search.run", *sys.argv[1:], "--dry-run"], capture_output=True, text=True)
sys.stdout.write(repr((r.returncode, r.stdout, r.stderr, time.perf_counter() - t,
                       resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)))
"""


def dry_run(path: Path, tmp_path: Path) -> tuple[int, str, str, float, int]:
    out = subprocess.run([sys.executable, "-c", MEASURE, str(path), "--storage", str(tmp_path / "runs")],
                         cwd=REPO, capture_output=True, text=True, check=True, timeout=120)
    return eval(out.stdout)  # (exit code, stdout, stderr, seconds, peak RSS in kB)


@pytest.mark.parametrize("name, size", [("grid_10_params_10_values", "10,000,000,000"),
                                        ("grid_million_points", "1,000,000")])
def test_a_huge_grid_is_refused_by_the_dry_run_fast_and_small(tmp_path, name, size):
    code, out, err, seconds, peak_kb = dry_run(BROKEN / f"{name}.yaml", tmp_path)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) <= LINE, err
    assert f"a grid of {size} points" in lines[0] and "at most 10,000 trials" in lines[0]
    assert seconds < 10 and peak_kb < 2 * 1024 * 1024, (seconds, peak_kb)  # the CLI starts in ~1 s


@pytest.mark.parametrize("name", ["grid_10_params_10_values", "grid_million_points"])
def test_a_huge_grid_is_counted_not_built(name):
    start = time.perf_counter()
    with pytest.raises(SpaceError, match="over the trial cap"):
        load_space(BROKEN / f"{name}.yaml")
    assert time.perf_counter() - start < 2


def test_the_cap_counts_repeats_and_samples_and_the_environment_raises_it(tmp_path, monkeypatch):
    with pytest.raises(SpaceError, match=r"1,000 points \(3 params\) x repeats 20 = 20,000 trials"):
        load_space(BROKEN / "grid_repeats_over_cap.yaml")
    with pytest.raises(SpaceError, match=r"search\.num_samples: 1,000,000 samples is over the trial cap"):
        load_space(BROKEN / "optuna_too_many_samples.yaml")
    monkeypatch.setenv(limits.ENV_MAX_TRIALS, "1000000")
    assert load_space(BROKEN / "optuna_too_many_samples.yaml").num_samples == 1_000_000
    monkeypatch.setenv(limits.ENV_MAX_TRIALS, "3")
    path = tmp_path / "four.yaml"
    path.write_text("search: {algorithm: grid}\nspace:\n  act: {grid: [gelu, starrelu]}\n"
                    "  lambda_gdl: {grid: [0.0, 0.5]}\n")
    with pytest.raises(SpaceError, match=r"a grid of 4 points \(2 params\) is over the trial cap; expected at most 3 "):
        load_space(path)
    path.write_text("search: {algorithm: grid}\nspace:\n  lambda_gdl: {grid: [0.0, 0.1, 0.2, 0.5]}\n")
    with pytest.raises(SpaceError, match=r"space\.lambda_gdl\.grid: 4 values, more than the trial cap"):
        load_space(path)


def test_grid_size_counts_conditions_exactly_or_says_at_most(tmp_path, monkeypatch):
    path = tmp_path / "cond.yaml"
    path.write_text("""
space:
  preset: {grid: [incepu, poolformer, simvpv2]}
  act: {grid: [gelu, starrelu], when: {preset: [poolformer, simvpv2]}}
  c_t: {grid: [64, 128, 256], when: {act: starrelu}}
  lambda_gdl: {grid: [0.0, 0.5]}
search: {algorithm: grid}
""")
    spec = load_space(path)
    assert limits.grid_size(spec.space) == (len(expand(spec.space)), True) == (18, True)
    monkeypatch.setattr(limits, "_MAX_STATES", 1)  # too many partial assignments to count: the product
    assert limits.grid_size(spec.space) == (3 * 2 * 3 * 2, False)
    monkeypatch.setenv(limits.ENV_MAX_TRIALS, "20")
    with pytest.raises(SpaceError, match=r"a grid of at most 36 points \(4 params\)"):
        load_space(path)


def test_a_billion_laughs_file_is_refused_at_its_first_anchor(tmp_path):
    path = LIMITS / "yaml_billion_laughs.yaml"
    with pytest.raises(SpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert message == (f"{path}: line 4, column 4: YAML anchor &a; "
                       "expected no YAML anchors or aliases: write each value out where it is used")
    code, out, err, seconds, peak_kb = dry_run(path, tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1 and len(err) <= LINE and peak_kb < 2 * 1024 * 1024


def test_a_file_over_1_mb_is_refused_unparsed(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("search: {algorithm: grid}\n" + "# padding\n" * 110_000)
    start = time.perf_counter()
    with pytest.raises(SpaceError) as info:
        load_space(path)
    assert time.perf_counter() - start < 2
    message = str(info.value)
    assert message.startswith(f"{path}: (file): over 1,000,000 bytes") and "at most 1 MB" in message
    assert len(message) <= LINE + len(str(path))


@pytest.mark.parametrize("text", [
    "search: {algorithm: grid}\nbase: {act: " + "x" * 100_000 + "}\n",
    "search: {algorithm: grid}\nbase:\n  " + "y" * 1000 + ": 1\n",
    "search: {algorithm: grid}\nspace:\n  act: {grid: [gelu, " + "z" * 100_000 + "]}\n",
    "search: {algorithm: optuna, num_samples: 2}\nspace:\n  act: {choice: [gelu, starrelu]}\n"
    "  c_t: {choice: [64, 128], when: {act: " + "w" * 100_000 + "}}\n",
    "search: {algorithm: grid}\nspace:\n  act: {grid: [gelu]}\nblocks: [" + "v" * 100_000 + "]\n",
], ids=["value", "key", "grid-value", "when-value", "block"])
def test_a_long_bogus_value_gives_a_short_line(tmp_path, text):
    path = tmp_path / "long.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError) as info:
        load_space(path)
    body = str(info.value)[len(str(path)) + 2:]
    assert len(body) <= LINE - 20 and "..." in body and "; expected " in body, body


def test_the_long_value_corpus_file_is_one_short_line():
    path = LIMITS / "long_bogus_value.yaml"
    with pytest.raises(SpaceError) as info:
        load_space(path)
    assert len(str(info.value)) <= LINE and "..." in str(info.value)


def test_an_alias_is_refused_even_when_small():
    path = LIMITS / "yaml_alias.yaml"
    with pytest.raises(SpaceError, match=r"yaml_alias\.yaml: line 6, column 15: YAML anchor &loss; expected no YAML"):
        load_space(path)


def test_a_grid_at_the_cap_still_loads():
    path = REPO / "tests/search/space/broken_spaces/grid_repeats_over_cap.yaml"
    text = path.read_text().replace("repeats: 20", "repeats: 10")
    spec = load_space_text(text, path.parent / "at_cap.yaml")
    assert spec.num_samples == 10_000 == len(spec.grid_points())


def load_space_text(text: str, name: Path):
    from search import safe_yaml
    from search.space import parse_space

    return parse_space(safe_yaml.loads(text), str(name))
