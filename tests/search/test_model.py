"""python -m search.model: a model from a file or from MLflow (a real SQLite store here; the
registered model of a real search, on an `mlflow server`, is tested in run/test_run.py), and every
bad source refused in one line with exit code 2, before anything is written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from search import model as cli
from search.report import animation
from simvp_core import evaluate
from simvp_core.config import FP32, TrainConfig
from simvp_core.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]
TINY = {"preset": "simvpv2", "n_s": 2, "n_t": 2, "c_s": 4, "c_t": 8, "train_size": 2, "val_size": 1,
        "test_size": 2, "eval_batch_size": 2, "device": "cpu"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, fresh_mlflow_store) -> dict:
    """A trainer checkpoint, and an SQLite MLflow store whose run holds it as a file artifact."""
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("model_cli")
    trainer = Trainer(TrainConfig(**TINY), data_dir="sample")
    trainer.save_checkpoint(folder / "checkpoint.pt")
    uri = fresh_mlflow_store(folder)
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("m", artifact_location=(folder / "art").as_uri())).info.run_id
    client.log_artifact(run_id, str(folder / "checkpoint.pt"), artifact_path="trained")
    client.set_terminated(run_id)
    return {"folder": folder, "uri": uri, "run_id": run_id, "checkpoint": folder / "checkpoint.pt",
            "test": trainer.evaluate("test")}


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and len(err) <= 300 and err.startswith("error: "), err
    return err


def test_a_file_artifact_of_a_run_evaluates_as_the_file_itself(store, capsys) -> None:
    options = ["--data-dir", "sample", "--test-size", "2", "--batch-size", "2", "--device", "cpu", "--json"]
    assert cli.main(["evaluate", "--model-uri", f"runs:/{store['run_id']}/trained/checkpoint.pt",
                     "--tracking-uri", store["uri"], *options]) == 0
    by_uri = json.loads(capsys.readouterr().out)
    assert evaluate.main(["--checkpoint", str(store["checkpoint"]), *options]) == 0
    by_file = json.loads(capsys.readouterr().out)
    assert by_uri.pop("model_uri") == f"runs:/{store['run_id']}/trained/checkpoint.pt"
    assert by_file.pop("checkpoint") == str(store["checkpoint"])
    assert by_uri == by_file
    assert {k: by_uri[k] for k in store["test"]} == pytest.approx(store["test"], rel=1e-6)


def test_predict_writes_a_gif_of_input_target_and_prediction_per_sequence(store, tmp_path, capsys) -> None:
    out = tmp_path / "gifs" / "p.gif"
    assert cli.main(["predict", "--checkpoint", str(store["checkpoint"]), "--out", str(out), "--sequences", "2",
                     "--data-dir", "sample", "--device", "cpu"]) == 0
    assert f"wrote {out}: 2 test sequence(s) of " in capsys.readouterr().out
    with Image.open(out) as gif:
        assert gif.n_frames == animation.FRAMES and gif.info["loop"] == 0
        assert gif.size == (3 * 64 * animation.SCALE + 4 * animation.GAP,
                            2 * animation.LABEL_PIXELS + 2 * 64 * animation.SCALE + 3 * animation.GAP)
        gif.seek(animation.FRAMES - 1)
        last = np.asarray(gif.convert("L"))
    assert last.std() > 0
    trainer = Trainer(TrainConfig(**{**TINY, **FP32}), data_dir="sample")  # the GIF's predictions are float32
    trainer.load_checkpoint(store["checkpoint"])
    inputs, targets, preds = trainer.predict(2)
    top, cell = animation.LABEL_PIXELS + animation.GAP, 64 * animation.SCALE
    x = animation.GAP + 2 * (cell + animation.GAP)  # the prediction column, first row, frame 20
    shown = last[top:top + cell:animation.SCALE, x:x + cell:animation.SCALE] / 255.0
    assert np.abs(shown - np.clip(preds[0, -1, 0].numpy(), 0, 1)).max() < 2 / 255 + 1e-6


@pytest.mark.parametrize("argv, words", [
    (["--model-uri", "s3://bucket/model.pt"], "expected models:/NAME@ALIAS, models:/NAME/VERSION or runs:/"),
    (["--model-uri", "models:/"], "expected models:/NAME@ALIAS"),
    (["--model-uri", "models:/m@best", "--tracking-uri", "sqlite:///{folder}/nothing/mlflow.db"],
     "no MLflow store there"),
    (["--model-uri", "models:/never-registered@best", "--tracking-uri", "{uri}"],
     "Registered Model with name=never-registered not found"),
    (["--model-uri", "runs:/{run_id}/trained", "--tracking-uri", "{uri}"], "without extra_files/simvp_model.pt"),
    (["--model-uri", "runs:/{run_id}/nope.pt", "--tracking-uri", "{uri}"], "not found in sqlite:///"),
    (["--checkpoint", "{folder}/nope.pt"], "nope.pt: no such checkpoint"),
])
def test_a_bad_model_source_is_one_line_and_exit_2(store, capsys, tmp_path, monkeypatch, argv, words) -> None:
    """Nothing is written: no output, no store made where none was (MLflow's default ./mlflow.db)."""
    monkeypatch.chdir(tmp_path)
    argv = [a.format(**store) for a in argv]
    assert cli.main(["to-openstl", *argv, "out.ckpt"]) == 2
    assert words in one_line(capsys)
    assert list(tmp_path.iterdir()) == [] and not (store["folder"] / "nothing").exists()


def test_an_unreachable_server_and_a_gif_without_gif_are_refused_in_one_line(store, tmp_path, capsys,
                                                                            free_port) -> None:
    port = free_port()
    assert cli.main(["evaluate", "--model-uri", "models:/m@best", "--tracking-uri",
                     f"http://127.0.0.1:{port}"]) == 2
    assert f"--tracking-uri http://127.0.0.1:{port}: MLflow cannot be reached" in one_line(capsys)
    assert cli.main(["predict", "--checkpoint", str(store["checkpoint"]), "--out", str(tmp_path / "p.png"),
                     "--data-dir", "sample"]) == 2
    assert "expected a file name ending in .gif" in one_line(capsys)
    with pytest.raises(SystemExit) as info:
        cli.main(["predict", "--checkpoint", "a.pt", "--model-uri", "models:/m@best", "--out", "p.gif"])
    assert info.value.code == 2 and "not allowed with argument" in one_line(capsys)
    assert not list(tmp_path.iterdir())


def test_to_openstl_from_a_uri_writes_the_state_dict_openstl_loads(store, tmp_path, capsys) -> None:
    out = tmp_path / "openstl.ckpt"
    assert cli.main(["to-openstl", "--model-uri", f"runs:/{store['run_id']}/trained/checkpoint.pt",
                     "--tracking-uri", store["uri"], str(out)]) == 0
    assert "OpenSTL SimVP_Model(model_type='gSTA')" in capsys.readouterr().out
    saved = torch.load(out, weights_only=True)
    assert saved["hyper_parameters"]["hid_S"] == 4 and all(k.startswith("model.") for k in saved["state_dict"])


def test_help_imports_neither_torch_nor_mlflow() -> None:
    code = ("import sys, runpy; sys.argv = ['search.model', 'predict', '--help']\n"
            "try: runpy.run_module('search.model', run_name='__main__')\n"
            "except SystemExit: pass\n"
            "print(sorted({'torch', 'mlflow', 'ray'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--model-uri" in out.stdout and out.stdout.strip().endswith("[]")
