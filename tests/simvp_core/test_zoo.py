"""The model zoo table: GMACs against the reference, and the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from simvp_core.models import PRESETS, build_model, count_params
from simvp_core.zoo import gmacs_per_sequence, zoo_rows

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("preset,reference", [("simvpv2", 2.81), ("simvpv2-l", 16.5)])
def test_gmacs_match_the_reference_within_2_percent(preset, reference):
    with torch.device("meta"):
        model = build_model(preset)
    assert abs(gmacs_per_sequence(model) / reference - 1) < 0.02


def test_gmacs_on_a_real_model_equal_the_meta_count_and_keep_training_mode():
    model = build_model("simvpv2", c_s=8, c_t=16, n_t=2)
    with torch.device("meta"):
        meta = build_model("simvpv2", c_s=8, c_t=16, n_t=2)
    assert gmacs_per_sequence(model) == pytest.approx(gmacs_per_sequence(meta))
    assert model.training


def test_gmacs_grow_with_the_frame_area():
    with torch.device("meta"):
        small = gmacs_per_sequence(build_model("simvpv2", in_shape=(10, 1, 32, 32)))
        large = gmacs_per_sequence(build_model("simvpv2"))
    assert large == pytest.approx(4 * small)


def test_zoo_rows_cover_every_preset_with_its_size_and_counts():
    rows = zoo_rows()
    assert [row["preset"] for row in rows] == list(PRESETS)
    for row in rows:
        cfg = PRESETS[row["preset"]]
        assert (row["translator"], row["n_s"], row["n_t"], row["c_s"], row["c_t"]) == (
            cfg.translator, cfg.n_s, cfg.n_t, cfg.c_s, cfg.c_t)
        assert row["gmacs"] > 0
    simvpv2 = next(row for row in rows if row["preset"] == "simvpv2")
    assert simvpv2["params"] == count_params(build_model("simvpv2"))


def test_cli_prints_a_markdown_table_of_every_preset():
    result = subprocess.run([sys.executable, "-m", "simvp_core.zoo"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("| preset") and "params (M)" in lines[0] and "GMACs" in lines[0]
    presets = [line.split("|")[1].strip() for line in lines[2:]]
    assert presets == list(PRESETS)
    counts = {line.split("|")[1].strip(): line.split("|")[7].strip() for line in lines[2:]}
    assert (counts["simvpv2"], counts["poolformer"], counts["poolformer-openstl"]) == ("6.456", "5.173", "5.086")
