"""search.report on hand-made run folders: tables equal the stored numbers, figures render, the
search metric picks the best configuration, broken folders give one clear error."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from PIL import Image

from search.report import FIGURE_FILES, ReportError, animation, build_report, cli, figures
from simvp_core.config import TrainConfig

REPO = Path(__file__).resolve().parents[3]
DEFAULTS = TrainConfig().to_dict()


def trial(trial_id: str, status: str = "completed", *, test: tuple | None = None, val_mse: float = 50.0,
          epochs_run: int = 3, repeat: int = 0, detail: str = "", **config) -> dict:
    """One results.parquet row; `test` = (mse, mae, ssim, psnr), NaN unless the trial completed."""
    cfg = {**DEFAULTS, "epochs": 3, **config}
    cfg["seed"] = 42 + repeat
    searched = ["lambda_ddr", "batch_size"]
    mse, mae, ssim, psnr = test if test else (np.nan,) * 4
    history = [{"epoch": e + 1, "val_mse": val_mse + 10.0 * (epochs_run - e - 1)}
               for e in range(epochs_run)]
    return {
        "trial_id": trial_id, "status": status, "status_detail": detail, "epochs_run": epochs_run,
        **cfg, "searched": json.dumps(searched),
        "config_key": ",".join(f"{k}={cfg[k]}" for k in searched), "repeat": repeat,
        "val_mse": val_mse, "val_mae": val_mse * 2, "val_ssim": 0.9, "val_psnr": 20.0,
        "best_val_mse": val_mse, "test_mse": mse, "test_mae": mae, "test_ssim": ssim,
        "test_psnr": psnr, "test_set": "generated stand-in: 100 sequences (test)",
        "precision": "fp32, contiguous",
        "n_params": 1_234_567, "seconds": 10.0 * epochs_run, "ended": math.nan, "node_id": "node-a",
        "retries": 0,
        "history": json.dumps(history), "mlflow_run_id": "",
    }


PUBLISHED = [
    {"match": {"epochs": 3, "batch_size": 32, "lambda_ddr": 0.0}, "mse": 41.0523, "ssim": 0.90474,
     "source": "paper Table 4"},
]


def table4_rows() -> list[dict]:
    """Two blocks of batch size, like the paper's Table 4; block 16 has two seeds per setting."""
    return [
        trial("t00", test=(41.05, 90.10, 0.9047, 21.30), lambda_ddr=0.0, batch_size=32),
        trial("t01", test=(40.98, 90.50, 0.9045, 21.40), lambda_ddr=0.1, batch_size=32),
        # lower validation MSE than every completed row, but stopped: must not be bold
        trial("t02", "stopped", val_mse=30.0, epochs_run=1, lambda_ddr=0.5, batch_size=32,
              detail="stopped early by ASHA at epoch 1"),
        trial("t03", "errored", val_mse=70.0, epochs_run=2, lambda_ddr=1.0, batch_size=32,
              detail="RuntimeError: CUDA out of memory | retry 1"),
        trial("t04", "diverged", val_mse=np.nan, epochs_run=1, lambda_ddr=2.0, batch_size=32,
              detail="loss became nan at epoch 1"),
        trial("t05", test=(40.02, 88.0, 0.9071, 21.90), lambda_ddr=0.0, batch_size=16),
        trial("t06", test=(40.10, 88.4, 0.9069, 21.80), lambda_ddr=0.0, batch_size=16, repeat=1),
        trial("t07", test=(40.05, 85.0, 0.9072, 21.85), lambda_ddr=0.1, batch_size=16),
        trial("t08", test=(40.12, 85.2, 0.9070, 21.75), lambda_ddr=0.1, batch_size=16, repeat=1),
    ]


def make_run_dir(tmp_path: Path, rows: list[dict], name: str = "table4", predictions: bool = True,
                 **experiment) -> Path:
    """runs/<name>/ with results.parquet, experiment.json and predictions of completed trials."""
    run_dir = tmp_path / "runs" / name
    (run_dir / "predictions").mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(run_dir / "results.parquet", index=False)
    exp = {"experiment": name, "description": "Lambda_ddr and batch size, as the paper's Table 4.",
           "space": f"spaces/{name}.yaml", "searched": ["lambda_ddr", "batch_size"],
           "blocks": ["batch_size"], "published": PUBLISHED, "algorithm": "grid",
           "scheduler": "asha", "grace_period": 1, "reduction_factor": 2, "max_epochs": 3,
           "metric": "val_mse", "mode": "min", "command": "python -m search.run spaces/x.yaml",
           "git_commit": "abc123", "started": "2025-01-01T10:00:00", "finished":
           "2025-01-01T10:30:00", "wall_seconds": 1800.0, "resources": {"cpu": 2, "gpu": 0.5},
           **experiment}
    (run_dir / "experiment.json").write_text(json.dumps(exp))
    rng = np.random.default_rng(0)
    for row in rows:
        if predictions and row["status"] == "completed":
            frames = {k: rng.random((2, 10, 1, 64, 64), dtype=np.float32)
                      for k in ("inputs", "targets", "preds")}
            np.savez(run_dir / "predictions" / f"{row['trial_id']}.npz", **frames)
    return run_dir


def md_tables(md: str) -> list[list[dict[str, str]]]:
    """Every pipe table in the markdown as a list of {header: cell} rows."""
    out, lines = [], md.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("| ---"):
            header = _cells(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(dict(zip(header, _cells(lines[i]))))
                i += 1
            out.append(rows)
        else:
            i += 1
    return out


def _cells(line: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def number(cell: str) -> float:
    return float(cell.replace("*", "").replace("†", "").split("±")[0])


def is_bold(cell: str) -> bool:
    return cell.startswith("**")


@pytest.fixture(scope="module")
def table4(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """The Table 4 run and its report, built once for the tests that only read it."""
    tmp_path = tmp_path_factory.mktemp("table4")
    run_dir = make_run_dir(tmp_path, table4_rows())
    md_path = build_report(run_dir, tmp_path / "reports")
    return run_dir, md_path, md_path.read_text()


def test_table_values_equal_the_parquet(table4):
    run_dir, _, md = table4
    df = pd.read_parquet(run_dir / "results.parquet")
    results = [t for t in md_tables(md) if t and "MSE ↓" in t[0]]
    assert len(results) == 2  # one per batch size
    seen = 0
    for table in results:
        for row in table:
            ddr = float(row["lambda_ddr"])
            block = 32 if "paper MSE" in row else 16  # only block 32 has a published match
            done = df[(df.lambda_ddr == ddr) & (df.batch_size == block) & (df.status == "completed")]
            assert int(row["n"]) == len(done)
            assert number(row["params (M)"]) == pytest.approx(1.234567, abs=5e-4)
            for metric, dp in (("mse", 2), ("mae", 2), ("ssim", 4), ("psnr", 2)):
                values = done[f"test_{metric}"].to_numpy()
                cell = row[next(h for h in row if h.startswith(metric.upper()))]
                assert number(cell) == pytest.approx(values.mean(), abs=0.51 * 10 ** -dp)
                if len(values) > 1:
                    std = float(cell.replace("*", "").replace("†", "").split("±")[1])
                    assert std == pytest.approx(values.std(ddof=1), abs=0.51 * 10 ** -dp)
            seen += 1
    assert seen == 4  # the four completed configurations, stopped/errored/diverged excluded


def test_best_of_block_is_bold_among_completed_only(table4):
    _, _, md = table4
    block32 = next(t for t in md_tables(md) if t and "paper MSE" in t[0])
    by_ddr = {float(r["lambda_ddr"]): r for r in block32}
    assert set(by_ddr) == {0.0, 0.1}  # the stopped 0.5 (val 30.0) is not a ranked row
    assert is_bold(by_ddr[0.1]["MSE ↓"]) and not is_bold(by_ddr[0.0]["MSE ↓"])
    assert is_bold(by_ddr[0.0]["MAE ↓"]) and not is_bold(by_ddr[0.1]["MAE ↓"])
    assert is_bold(by_ddr[0.0]["SSIM ↑"]) and is_bold(by_ddr[0.1]["PSNR ↑"])
    assert "†" not in "".join(r["MSE ↓"] for r in block32)  # single runs: no noise claim
    stopped = next(t for t in md_tables(md) if t and "status" in t[0])
    assert all("**" not in cell for row in stopped for cell in row.values())


def test_not_completed_trials_are_labelled(table4):
    _, _, md = table4
    others = [r for t in md_tables(md) if t and "status" in t[0] for r in t]
    by_trial = {r["trial"]: r for r in others}
    assert set(by_trial) == {"t02", "t03", "t04"}
    assert by_trial["t02"]["status"] == "stopped early"
    assert by_trial["t02"]["detail"] == "stopped early by ASHA at epoch 1"
    assert number(by_trial["t02"]["last val MSE"]) == 30.0
    assert by_trial["t03"]["status"] == "errored"
    assert by_trial["t03"]["detail"] == "RuntimeError: CUDA out of memory | retry 1"
    assert by_trial["t04"]["status"] == "diverged" and by_trial["t04"]["last val MSE"] == "–"


def test_repeats_are_aggregated_with_noise_mark(table4):
    _, _, md = table4
    block16 = next(t for t in md_tables(md) if t and "paper MSE" not in t[0] and "MSE ↓" in t[0])
    by_ddr = {float(r["lambda_ddr"]): r for r in block16}
    assert all(r["n"] == "2" and "±" in r["MSE ↓"] for r in block16)
    # MSE 40.06 +- 0.06 against 40.085 +- 0.05: overlapping, so the bold best carries the mark
    assert by_ddr[0.0]["MSE ↓"].startswith("**") and by_ddr[0.0]["MSE ↓"].endswith("†")
    # MAE 88.2 against 85.1, std 0.28 and 0.14: clearly separated, bold without the mark
    assert is_bold(by_ddr[0.1]["MAE ↓"]) and not by_ddr[0.1]["MAE ↓"].endswith("†")
    assert "Welch" in md


def test_published_values_and_differences(table4):
    _, _, md = table4
    block32 = next(t for t in md_tables(md) if t and "paper MSE" in t[0])
    matched = next(r for r in block32 if float(r["lambda_ddr"]) == 0.0)
    assert number(matched["paper MSE"]) == pytest.approx(41.0523, abs=0.005)
    assert number(matched["Δ MSE"]) == pytest.approx(41.05 - 41.0523, abs=0.005)
    assert number(matched["paper SSIM"]) == pytest.approx(0.90474, abs=5e-5)
    assert number(matched["Δ SSIM"]) == pytest.approx(0.9047 - 0.90474, abs=5e-5)
    unmatched = next(r for r in block32 if float(r["lambda_ddr"]) == 0.1)
    assert unmatched["paper MSE"] == "–"
    assert "paper Table 4" in md


def test_header_names_the_stand_in_test_set_and_cost(table4):
    _, _, md = table4
    assert "NOT the standard file" in md and "generated stand-in: 100 sequences" in md
    cost = {r["cost"]: r["value"] for t in md_tables(md) if t and "cost" in t[0] for r in t}
    epochs_run = 3 * 6 + 1 + 2 + 1
    assert cost["trials"] == "9"
    assert cost["trial-epochs run"] == str(epochs_run)
    assert cost["trial-epochs without early stopping"] == str(9 * 3)
    assert cost["GPU-hours"] == f"{10.0 * epochs_run * 0.5 / 3600:.3f}"
    assert md.rstrip().endswith("(the report is a pure function of `runs/table4/`).")
    assert "python -m search.report runs/table4" in md


def test_regenerating_gives_identical_bytes(table4):
    run_dir, md_path, md = table4
    pngs = {p.name: p.read_bytes() for p in (md_path.parent / "table4").glob("*.png")}
    again = build_report(run_dir, md_path.parent)
    assert again.read_bytes() == md.encode()
    assert {p.name: p.read_bytes() for p in (md_path.parent / "table4").glob("*.png")} == pngs


def test_figures_open_with_expected_size_and_content(table4):
    _, md_path, md = table4
    fig_dir = md_path.parent / "table4"
    width, height = figures.strip_size(2 + 2)  # input, target, best of each of the two blocks
    expected = {
        "predictions.png": (round(width * figures.DPI), round(height * figures.DPI)),
        "learning_curves.png": tuple(round(s * figures.DPI) for s in figures.CURVES_SIZE),
        "cost.png": tuple(round(s * figures.DPI) for s in figures.COST_SIZE),
        "parallel_coordinates.png": tuple(round(s * figures.DPI) for s in figures.PARALLEL_SIZE),
        "efficiency.png": tuple(round(s * figures.DPI) for s in figures.EFFICIENCY_SIZE),
        # input, target and the two blocks' best side by side; two test sequences, one per row
        "predictions.gif": (4 * 64 * animation.SCALE + 5 * animation.GAP,
                            2 * animation.LABEL_PIXELS + 2 * 64 * animation.SCALE + 3 * animation.GAP),
    }
    assert set(expected) == set(FIGURE_FILES)
    for name, size in expected.items():
        assert f"](table4/{name})" in md
        with Image.open(fig_dir / name) as image:
            assert image.size == size
            pixels = np.asarray(image.convert("L"), dtype=float)
        assert pixels.std() > 0
    assert "(prediction 1: batch_size=16, lambda_ddr=0; prediction 2: batch_size=32, lambda_ddr=0)" in md


def test_the_animation_plays_every_frame_and_shows_each_frame_of_its_columns(tmp_path):
    """Frame t of the GIF: input frame t, target and prediction frame 10 + t, a counter below."""
    seqs = np.zeros((1, 20, 1, 64, 64), dtype=np.float32)
    for t in range(20):
        seqs[0, t, 0, :, t * 3:t * 3 + 3] = 1.0  # a bar moving right: each frame its own column
    arrays = {"inputs": seqs[:, :10], "targets": seqs[:, 10:], "preds": seqs[:, 10:] * 0.5}
    path = animation.write_gif(animation.columns_of(arrays), tmp_path / "a.gif")
    scale, gap, top = animation.SCALE, animation.GAP, animation.LABEL_PIXELS + animation.GAP
    with Image.open(path) as gif:
        assert gif.n_frames == 10 and gif.info["loop"] == 0
        durations = []
        for t in range(10):
            gif.seek(t)
            durations.append(gif.info["duration"])
            frame = np.asarray(gif.convert("L"), dtype=float)
            for column, (frame_index, level) in enumerate([(t, 255), (10 + t, 255), (10 + t, 128)]):
                x0 = gap + column * (64 * scale + gap)
                bright = np.flatnonzero(frame[top + 32 * scale, x0:x0 + 64 * scale] > 64)
                assert list(bright // scale // 3) == [frame_index] * 3 * scale, (t, column)
                assert frame[top + 32 * scale, x0 + bright[0]] == pytest.approx(level, abs=2)
            counter = frame[-animation.LABEL_PIXELS:]
            assert (counter < 128).any()  # the frame counter is drawn
    assert durations == [animation.FRAME_MS] * 9 + [animation.LAST_FRAME_MS]


def test_pareto_front_keeps_only_undominated_points():
    x = np.array([5.0, 1.0, 3.0, 2.0, 4.0, 1.0])
    y = np.array([1.0, 9.0, 4.0, 5.0, 6.0, 8.0])
    # (1, 8) beats (1, 9); (2, 5), (3, 4), (5, 1) each trade size for error; (4, 6) is beaten by (3, 4)
    assert list(figures.pareto_front(x, y)) == [5, 3, 2, 0]


def test_unreadable_history_gives_no_curve():
    assert figures.history_curve("null", "val_mse") == ([], [])
    assert figures.history_curve("{not json", "val_mse") == ([], [])
    assert figures.history_curve('[{"epoch": 1, "val_mse": 3.5}, {"epoch": 2, "val_mse": NaN}]', "val_mse") \
        == ([1], [3.5])


def test_tiny_run_single_trial_without_test_metrics(tmp_path):
    rows = [trial("only", test=(np.nan,) * 4, epochs_run=1, lambda_ddr=0.0, batch_size=32)]
    run_dir = make_run_dir(tmp_path, rows, name="tiny", blocks=[], published=[], predictions=False)
    md = build_report(run_dir, tmp_path / "reports").read_text()
    row = next(t for t in md_tables(md) if t and "MSE ↓" in t[0])[0]
    assert row["MSE ↓"] == "–" and row["n"] == "1"
    assert "No stored predictions" in md
    assert (tmp_path / "reports" / "tiny" / "cost.png").is_file()
    assert "](tiny/parallel_coordinates.png)" in md and "](tiny/efficiency.png)" in md


def test_a_run_with_nothing_searched_and_nothing_completed_still_gets_its_report(tmp_path):
    rows = [trial("s0", "stopped", epochs_run=1, lambda_ddr=0.0, batch_size=32),
            trial("s1", "errored", epochs_run=2, lambda_ddr=0.0, batch_size=32)]
    for row in rows:
        row["searched"] = "[]"
    run_dir = make_run_dir(tmp_path, rows, name="fixed", searched=[], blocks=[], published=[])
    md = build_report(run_dir, tmp_path / "reports").read_text()
    assert "Nothing was searched, so no parallel coordinates." in md
    assert "](fixed/efficiency.png)" in md and (tmp_path / "reports" / "fixed" / "efficiency.png").is_file()
    assert not (tmp_path / "reports" / "fixed" / "parallel_coordinates.png").exists()

def test_standard_test_set_is_named_without_a_warning(tmp_path):
    rows = table4_rows()[:2]
    for row in rows:
        row["test_set"] = "mnist_test_seq.npy (standard Moving MNIST test set)"
    run_dir = make_run_dir(tmp_path, rows, name="standard", finished=None)
    md = build_report(run_dir, tmp_path / "reports").read_text()
    assert "> **Test set:** mnist_test_seq.npy (standard Moving MNIST test set) (10,000 sequences)" in md
    assert "NOT the standard file" not in md
    assert "| finished | not finished (running or interrupted) |" in md


def test_reads_what_the_run_folder_writes(tmp_path):
    """The runner's own writer (search.runfolder.results) produces a file the report accepts unchanged."""
    from search.runfolder import results

    rows = [{**row, **{f"best_val_{m}": row[f"val_{m}"] for m in ("mae", "ssim", "psnr")}}
            for row in table4_rows()]
    run_dir = make_run_dir(tmp_path, rows, name="written")
    rows[0]["n_params"] = None  # the runner writes None when a trial never reported its size
    results.write(rows, run_dir)
    md = build_report(run_dir, tmp_path / "reports").read_text()
    block32 = next(t for t in md_tables(md) if t and "paper MSE" in t[0])
    assert [r["lambda_ddr"] for r in block32] == ["0", "0.1"]
    assert [r["params (M)"] for r in block32] == ["–", "1.235"]


def test_optuna_importances_and_where_the_trials_came_from(tmp_path):
    """Also: a sampler's trials over budget (PRUNED with their reason in the study) and the trials
    seeded from earlier searches, in the header, their own section and the importances' note."""
    from search.budget import OVER_BUDGET
    from search.run.warm import SOURCE_ATTR

    rows = table4_rows()
    warm = [{"run": "loss-a", "path": "runs/loss-a", "seeded": 3, "not_completed": 1,
             "ignored": [{"trial_id": "a7", "why": "fixed settings differ: epochs 50 (here 3)"}]},
            {"run": "runs/loss-b", "path": "runs/loss-b", "seeded": 0, "not_completed": 0, "ignored": []}]
    run_dir = make_run_dir(tmp_path, rows, name="tuned", algorithm="optuna", optuna_study="tuned",
                           budget={"params_m": 10.0, "gmacs": 5.0}, warm_start=warm)
    storage = optuna.storages.RDBStorage(f"sqlite:///{run_dir / 'optuna.db'}")
    study = optuna.create_study(study_name="tuned", storage=storage)
    dist = {"lambda_ddr": optuna.distributions.FloatDistribution(0.0, 2.0),
            "act": optuna.distributions.CategoricalDistribution(["gelu", "starrelu"])}
    for i in range(12):
        ddr = i / 6
        study.add_trial(optuna.trial.create_trial(
            params={"lambda_ddr": ddr, "act": ["gelu", "starrelu"][i % 2]}, distributions=dist,
            value=40.0 + 5 * ddr, user_attrs={SOURCE_ATTR: "loss-a"} if i < 3 else {}))
    for reason in ("params 46.77M > 10M", "params 46.77M > 10M", "GMACs 6.1 > 5"):
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.PRUNED, params={"lambda_ddr": 1.0, "act": "gelu"},
            distributions=dist, user_attrs={OVER_BUDGET: reason}))
    md = build_report(run_dir, tmp_path / "reports").read_text()
    importances = next(t for t in md_tables(md) if t and "importance" in t[0])
    assert {r["parameter"] for r in importances} == {"lambda_ddr", "act"}
    assert importances[0]["parameter"] == "lambda_ddr"  # the value depends on it alone
    assert ("from its 12 completed trials only (3 of them seeded from earlier searches) (left out: 0 pruned "
            "(stopped early by ASHA), 3 over budget (never trained), 0 failed") in md
    assert ("| budget | params <= 10M, GMACs <= 5 per sequence: 3 configuration(s) over it skipped, never "
            "trained |\n| warm start | 3 trial(s) seeded the study: 3 from loss-a, 0 from runs/loss-b; "
            "1 ignored |") in md
    section = md[md.index("### Budget and warm start"):]
    assert "- 1 sampled configuration(s): GMACs 6.1 > 5\n- 2 sampled configuration(s): params 46.77M > 10M" in section
    assert ("Warm start from `loss-a` (`runs/loss-a`): 3 completed trial(s) seeded the study, 1 ignored, "
            "1 not completed (never used):\n\n- a7: fixed settings differ: epochs 50 (here 3)") in section
    assert build_report(run_dir, tmp_path / "reports").read_text() == md


def test_optuna_with_too_few_trials_says_so(tmp_path):
    run_dir = make_run_dir(tmp_path, table4_rows()[:1], name="few", algorithm="optuna")
    study = optuna.create_study(study_name="only", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    study.add_trial(optuna.trial.create_trial(
        params={"lambda_ddr": 0.1}, value=41.0,
        distributions={"lambda_ddr": optuna.distributions.FloatDistribution(0.0, 2.0)}))
    md = build_report(run_dir, tmp_path / "reports").read_text()
    assert "too few finished trials (1)" in md


def test_index_lists_every_report(tmp_path):
    reports_dir = tmp_path / "reports"
    for name in ("b-search", "a-search"):
        build_report(make_run_dir(tmp_path, table4_rows()[:2], name=name), reports_dir)
    index = (reports_dir / "README.md").read_text()
    links = [r["report"] for t in md_tables(index) for r in t]
    assert links == ["[a-search](a-search.md)", "[b-search](b-search.md)"]
    assert "2 trials (2 completed)" in index


def _corrupt(run_dir: Path) -> None:
    (run_dir / "results.parquet").write_bytes(b"PAR1 this is not a parquet file")


def _drop_column(run_dir: Path) -> None:
    df = pd.read_parquet(run_dir / "results.parquet")
    df.drop(columns=["test_mse", "history"]).to_parquet(run_dir / "results.parquet")


BROKEN = {
    "missing folder": (shutil.rmtree, "no such run folder"),
    "missing parquet": (lambda d: (d / "results.parquet").unlink(), "results.parquet not found"),
    "corrupt parquet": (_corrupt, "incomplete or corrupt"),
    "missing columns": (_drop_column, "lacks column(s) test_mse, history"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_runs_raise_a_one_line_error(tmp_path, case):
    break_it, message = BROKEN[case]
    run_dir = make_run_dir(tmp_path, table4_rows()[:2])
    break_it(run_dir)
    with pytest.raises(ReportError, match=re.escape(message)) as info:
        build_report(run_dir, tmp_path / "reports")
    assert "\n" not in str(info.value)
    code = cli.main([str(run_dir), "--reports-dir", str(tmp_path / "reports")])
    assert code == 2


def test_cli_finds_the_run_by_experiment_name(tmp_path, capsys):
    make_run_dir(tmp_path, table4_rows()[:2])
    code = cli.main(["table4", "--runs-dir", str(tmp_path / "runs"),
                        "--reports-dir", str(tmp_path / "reports")])
    assert code == 0
    assert Path(capsys.readouterr().out.strip()) == tmp_path / "reports" / "table4.md"


def test_cli_exits_2_with_one_line_in_a_subprocess(tmp_path):
    _corrupt(make_run_dir(tmp_path, table4_rows()[:2]))
    bad = subprocess.run([sys.executable, "-m", "search.report", str(tmp_path / "runs" / "table4"),
                          "--reports-dir", str(tmp_path / "reports")],
                         cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "corrupt" in bad.stderr
    assert not (tmp_path / "reports" / "table4.md").exists()


def test_the_search_metric_picks_and_test_metrics_only_stand_beside(tmp_path):
    """A search on val_ssim (max): the headline, the insight and the prediction strip name the best
    configuration by val_ssim, though another has the lower test MSE; trials that did not complete
    show their val_ssim."""
    rows = [trial("a0", test=(45.0, 90.0, 0.90, 21.0), lambda_ddr=0.0, batch_size=32),
            trial("b0", test=(40.0, 85.0, 0.88, 21.5), lambda_ddr=0.1, batch_size=32),
            trial("c0", "stopped", epochs_run=1, lambda_ddr=0.5, batch_size=32)]
    for row, ssim in zip(rows, (0.95, 0.80, 0.99)):  # the stopped trial's higher value is never ranked
        row["val_ssim"] = ssim
        row["history"] = json.dumps([{"epoch": e + 1, "val_ssim": ssim - 0.1 * (row["epochs_run"] - e - 1)}
                                     for e in range(row["epochs_run"])])
    run_dir = make_run_dir(tmp_path, rows, name="ssim", metric="val_ssim", mode="max", blocks=[],
                           published=[])
    for trial_id, value in (("a0", 1.0), ("b0", 0.0)):  # a white prediction for a0, black for b0
        frames = np.full((2, 10, 1, 64, 64), value, dtype=np.float32)
        np.savez(run_dir / "predictions" / f"{trial_id}.npz", inputs=frames, targets=frames, preds=frames)
    md_path = build_report(run_dir, tmp_path / "reports")
    md = md_path.read_text()
    assert "best by val_ssim: test MSE 45.00" in md.splitlines()[0]
    assert "| metric | val_ssim (max) |" in md
    assert ("- Best by val_ssim (max): lambda_ddr=0, batch_size=32 — val_ssim 0.95, test MSE 45.00 "
            "(mean of 1 completed run(s)).") in md
    assert "Best by test MSE" not in md and "best configuration by val_ssim (paper Table 6)" in md
    stopped = next(t for t in md_tables(md) if t and "status" in t[0])
    assert [(r["trial"], r["last val SSIM"], r["best val SSIM"]) for r in stopped] == [("c0", "0.9900", "0.9900")]
    with Image.open(md_path.parent / "ssim" / "predictions.png") as image:
        pixels = np.asarray(image.convert("L"), dtype=float) / 255
    top = figures.STRIP_TITLE_INCHES + 2 * figures.STRIP_FRAME_INCHES  # the third row: the pick
    rows_px = slice(round((top + 0.2) * figures.DPI), round((top + 0.8) * figures.DPI))
    cols_px = slice(round((figures.STRIP_LABEL_INCHES + 0.2) * figures.DPI),
                    round((figures.STRIP_LABEL_INCHES + 9.8) * figures.DPI))
    assert pixels[rows_px, cols_px].mean() > 0.9  # a0's white frames, not b0's black ones


def test_the_command_row_shows_no_folder_of_the_machine_it_ran_on(tmp_path):
    """Absolute paths (also after `--flag=` and in an sqlite:/// URI) are cut to their last part;
    relative paths, other URIs and quoted words are shown as typed."""
    command = ("python -m search.run /home/ann/spaces/x.yaml --data-dir /srv/data/ --reports-dir=/tmp/rep "
               "--tracking-uri sqlite:////home/ann/runs/mlflow.db --storage s3://bucket/runs --name 'a b'")
    run_dir = make_run_dir(tmp_path, [trial("t0", test=(1.0, 2.0, 0.9, 20.0))], name="paths", blocks=[],
                           published=[], command=command, space="/home/ann/spaces/x.yaml")
    md = build_report(run_dir, tmp_path / "reports").read_text()
    assert ("| command | `python -m search.run .../x.yaml --data-dir .../data --reports-dir=.../rep "
            "--tracking-uri sqlite:///.../mlflow.db --storage s3://bucket/runs --name 'a b'` |") in md
    assert "| space file | `.../x.yaml` |" in md
    assert "/home/ann" not in md and "/srv" not in md and "/tmp/rep" not in md


def test_control_characters_read_back_from_the_run_folder_are_escaped_in_the_report(tmp_path):
    """Issue 23: a description, a command or a trial's error carrying newlines and terminal escapes
    cannot break the report's lines or tables."""
    rows = [trial("only", test=(np.nan,) * 4, epochs_run=1, lambda_ddr=0.0, batch_size=32, status="errored",
                  status_detail="RuntimeError: boom\nsecond line | \x1b[31mred")]
    run_dir = make_run_dir(tmp_path, rows, name="ctrl", blocks=[], published=[], predictions=False,
                           description="first\nsecond \x1b[2J", command="python -m search.run '\x07x\r.yaml'")
    md = build_report(run_dir, tmp_path / "reports").read_text()
    assert not any(c in md for c in "\x1b\x07\r")
    assert "first\\nsecond \\x1b[2J" in md and "'\\x07x\\r.yaml'" in md
    assert "RuntimeError: boom" in md and "second line" in md
    table_lines = [line for line in md.splitlines() if line.startswith("| ")]
    assert all(line.endswith(" |") for line in table_lines)  # no row cut by a newline
