"""search.tracking against real MLflow stores: the experiment a Tracker creates or reuses is tagged
as training runs, the link it gives opens the MLflow UI on the table of those runs (in a headless
Chromium, when one is installed), not on the GenAI pages; a report is attached to its search."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from search.tracking import KIND_TAG, TRAINING_KIND, Tracker, attach_report, experiment_url, ui_command

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))),
                None)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, fresh_mlflow_store) -> tuple[str, Path]:
    """(tracking URI of one SQLite store for the module, a space file to log as an artifact)."""
    folder = tmp_path_factory.mktemp("mlflow")
    space = folder / "space.yaml"
    space.write_text("experiment: tracked\n")
    return fresh_mlflow_store(folder), space


def start(uri: str, space: Path, name: str) -> Tracker:
    """A Tracker whose search (parent run) has started, with one child run for trial `t0`."""
    tracker = Tracker(uri, name, spec=None,
                      artifact_location=(space.parent / "mlartifacts" / name).as_uri())
    assert tracker.start_search(str(space), {"command": "test"}, {"epochs": 2})
    assert tracker.child("t0", lambda: {"act": "gelu"})
    assert tracker.enabled, tracker.off_reason
    return tracker


def test_a_new_experiment_opens_on_its_training_runs(store):
    uri, space = store
    tracker = start(uri, space, "fresh")
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("fresh")
    assert exp.tags[KIND_TAG] == TRAINING_KIND == "custom_model_development"
    runs = client.search_runs([exp.experiment_id])
    child = next(r for r in runs if r.data.tags.get("trial_id") == "t0")
    assert child.data.tags["mlflow.parentRunId"] == tracker.parent_run_id


def test_an_existing_experiment_without_a_kind_is_tagged(store):
    uri, space = store
    client = MlflowClient(uri)
    old = client.create_experiment("older", artifact_location=(space.parent / "old").as_uri())
    assert KIND_TAG not in client.get_experiment(old).tags  # as an older version left it
    first = start(uri, space, "older")
    assert client.get_run(first.parent_run_id).info.experiment_id == old
    assert client.get_experiment(old).tags[KIND_TAG] == TRAINING_KIND
    resumed = Tracker(uri, "older", spec=None, parent_run_id=first.parent_run_id)
    assert resumed.start_search(str(space), {}, {}) == first.parent_run_id
    assert client.get_experiment(old).tags[KIND_TAG] == TRAINING_KIND


def test_an_experiment_given_another_kind_keeps_it(store):
    uri, space = store
    client = MlflowClient(uri)
    chosen = client.create_experiment("chosen", tags={KIND_TAG: "genai_development"})
    start(uri, space, "chosen")
    assert client.get_experiment(chosen).tags[KIND_TAG] == "genai_development"


def test_the_printed_command_names_the_runs_page():
    assert ui_command("sqlite:///runs/mlflow.db") == "mlflow ui --backend-store-uri sqlite:///runs/mlflow.db"
    assert ui_command("sqlite:///runs/mlflow.db", "3") == (
        "mlflow ui --backend-store-uri sqlite:///runs/mlflow.db, then open "
        "http://127.0.0.1:5000/#/experiments/3?workflowType=machine_learning")
    assert ui_command("http://head:5000/", "3") == \
        "open http://head:5000/#/experiments/3?workflowType=machine_learning"
    assert ui_command("http://head:5000") == "open http://head:5000"


@pytest.fixture
def chromium() -> str:
    """The headless browser, asked for before the MLflow server so a skip starts nothing."""
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (apt-get install chromium): the MLflow UI page check "
                    "needs a headless browser")
    return CHROMIUM


def rendered_page(browser: str, url: str, profile: Path) -> tuple[str, str]:
    """(title, visible text) of a page after its scripts ran, from Chromium's --dump-dom."""
    html = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
         "--window-size=1400,900", "--virtual-time-budget=15000", "--dump-dom", url],
        capture_output=True, text=True, timeout=180, check=True).stdout
    title = re.search(r"<title>(.*?)</title>", html, re.S)
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return (title.group(1) if title else ""), " ".join(re.sub(r"<[^>]+>", " ", body).split())


def test_the_experiment_link_opens_the_runs_table_in_the_mlflow_ui(chromium, mlflow_server, store,
                                                                   tmp_path):
    uri = mlflow_server()
    tracker = start(uri, store[1], "browsed")
    title, text = rendered_page(chromium, experiment_url(uri, tracker.experiment_id),
                                tmp_path / "profile")
    assert title.startswith("Runs - "), (title, text[:500])
    assert "Run Name" in text and "2 matching runs" in text  # the parent and its one trial
    assert "Detect Issues" not in text and "Token Usage" not in text  # the GenAI overview's


def written_report(folder: Path, name: str = "s") -> Path:
    """reports/<name>.md and its figure folder, as search.report writes them."""
    (folder / "reports" / name).mkdir(parents=True)
    for png in ("predictions.png", "cost.png"):
        (folder / "reports" / name / png).write_bytes(b"\x89PNG")
    md = folder / "reports" / f"{name}.md"
    md.write_text(f"# {name}\n")
    return md


def test_a_report_is_attached_to_its_search(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a file store needs no migrations: fast
    uri = (tmp_path / "mlruns").as_uri()
    client = MlflowClient(uri)
    parent = client.create_run(client.create_experiment("s")).info.run_id
    assert attach_report(uri, parent, written_report(tmp_path))
    assert {a.path for a in client.list_artifacts(parent, "report")} == {"report/s.md", "report/s"}
    assert {a.path for a in client.list_artifacts(parent, "report/s")} == {
        "report/s/predictions.png", "report/s/cost.png"}


def test_attaching_survives_an_unreachable_server_and_a_search_without_mlflow(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    md = written_report(tmp_path)
    assert attach_report("http://127.0.0.1:9", "0123", md) is False
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "not attached to MLflow run 0123 at http://127.0.0.1:9" in out
    assert attach_report(None, None, md) is False and capsys.readouterr().out == ""
