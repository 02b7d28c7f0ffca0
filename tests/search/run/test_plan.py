"""search.run.plan: the command line checked before Ray starts. Nothing here starts Ray or trains;
the dry-run is held to refusing exactly what a run refuses."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from search import runfolder
from search.run import main
from search.run.plan import UsageError, fetch_data, local_gpus, make_plan
from search.runfolder import lock

REPO = Path(__file__).resolve().parents[3]
SHIPPED_SPACES = sorted((REPO / "spaces").glob("*.yaml"))


def run(*argv: Any) -> int:
    return main([str(a) for a in argv])


def test_every_shipped_space_passes_dry_run_on_a_cluster_and_as_smoke_here(tmp_path: Path, listening: str,
                                                                            capsys) -> None:
    assert SHIPPED_SPACES, "no space files in spaces/"
    storage = tmp_path / "runs"
    for path in SHIPPED_SPACES:  # in-process: the command line itself is covered below
        for extra in (("--address", listening), ("--smoke",)):
            assert run(path, "--dry-run", "--storage", storage, *extra) == 0, capsys.readouterr().err
            out = capsys.readouterr().out
            assert str(path) in out and out.rstrip().endswith("dry run: nothing started")
    assert not storage.exists()


def test_the_dry_run_refuses_what_the_run_refuses_with_the_same_line(
        tmp_path: Path, write_space, monkeypatch, capsys) -> None:
    storage = tmp_path / "runs"
    (storage / "taken").mkdir(parents=True)
    (storage / "taken" / "experiment.json").write_text("{}")
    grid = {"lr": {"grid": [0.01]}}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU, whatever this machine has
    for name, node in (("fifo_lock", os.mkfifo), ("dir_lock", os.mkdir)):  # a lock no search wrote
        (storage / name).mkdir()
        node(storage / name / "search.lock")
    (storage / "damaged" / "tune").mkdir(parents=True)  # resumable, but its experiment.json is wrong
    (storage / "damaged" / "tune" / "tuner.pkl").write_bytes(b"")
    (storage / "damaged" / "experiment.json").write_text('{"wall_seconds": "abc"}')
    (tmp_path / "afile").write_text("a file")
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        cases = {
            "a trial needs more CPUs": (write_space(tmp_path, "big", grid, resources={"cpu": 4096}),),
            "a trial needs a GPU": (write_space(tmp_path, "gpu", grid, resources={"cpu": 1, "gpu": 1}),),
            "the run folder exists": (write_space(tmp_path, "taken", grid),),
            "a bad name": (write_space(tmp_path, "named", grid), "--name", "a/b"),
            "nothing to resume": (write_space(tmp_path, "fresh", grid), "--resume"),
            "a bad --max-concurrent": (write_space(tmp_path, "conc", grid), "--max-concurrent", 0),
            # issue 23
            "a name over 100 characters": (write_space(tmp_path, "long", grid), "--name", "n" * 300),
            "a lock that is a FIFO": (write_space(tmp_path, "fifo_lock", grid),),
            "a lock that is a folder": (write_space(tmp_path, "dir_lock", grid), "--resume"),
            "a damaged experiment.json": (write_space(tmp_path, "damaged", grid), "--resume"),
            "reports under a file": (write_space(tmp_path, "rep", grid), "--reports-dir", tmp_path / "afile" / "r"),
            "a malformed --tracking-uri": (write_space(tmp_path, "uri", grid), "--tracking-uri", "http://[x"),
            "no Ray cluster at --address": (write_space(tmp_path, "addr", grid), "--address",
                                            f"127.0.0.1:{dead.getsockname()[1]}"),
            "a wrong $SIMVP_MAX_TRIALS": (write_space(tmp_path, "env", grid), {"SIMVP_MAX_TRIALS": "-1"}),
            "trials over the memory": (write_space(tmp_path, "mem", grid), {"SIMVP_MEMORY_LIMIT_MB": "10"}),
        }
        for case, argv in cases.items():
            env = argv[-1] if isinstance(argv[-1], dict) else {}
            argv = argv[:-1] if env else argv
            with monkeypatch.context() as mp:
                for k, v in env.items():
                    mp.setenv(k, v)
                assert run(*argv, "--storage", storage, "--dry-run") == 2, case
                dry = capsys.readouterr()
                assert run(*argv, "--storage", storage) == 2, case
                real = capsys.readouterr()
            assert dry.err == real.err and len(dry.err.strip().splitlines()) == 1, case
            assert len(dry.err) <= 301 and dry.out == real.out == "", case
    assert sorted(p.name for p in storage.iterdir()) == ["damaged", "dir_lock", "fifo_lock", "taken"]
    assert (storage / "damaged" / "experiment.json").read_text() == '{"wall_seconds": "abc"}'


def test_the_dry_run_says_each_trials_memory_and_disk_and_escapes_what_it_quotes(
        tmp_path: Path, write_space, capsys) -> None:
    space = write_space(tmp_path, "said", {"lr": {"grid": [0.01, 0.02]}},
                        description="first line\nsecond line \x1b[31mred")
    assert run(space, "--storage", tmp_path / "runs", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "  first line\\nsecond line \\x1b[31mred" in out and "\x1b" not in out
    assert re.search(r"^memory: about [\d.]+ MB \(batch_size 8: .*\) per trial, 2 at once; [\d.]+ GB", out, re.M)
    assert re.search(r"^disk: about [\d.]+ MB per trial checkpoint \([\d.]+ MB for all 2\), .* free$", out, re.M)


def test_broken_spaces_exit_2_with_one_line(tmp_path: Path, subprocess_env) -> None:
    bad_key = tmp_path / "bad_key.yaml"
    bad_key.write_text("search: {algorithm: grid}\nspace: {lr: {grid: [0.1]}}\nschedulr: {type: none}\n")
    bad_value = tmp_path / "bad_value.yaml"
    bad_value.write_text("search: {algorithm: grid}\nspace: {act: {grid: [relu]}}\n")
    expected = {bad_key: ("schedulr", "did you mean 'scheduler'"), bad_value: ("act",)}
    procs = {path: subprocess.Popen(
        [sys.executable, "-m", "search.run", str(path), "--storage", str(tmp_path / "runs")],
        cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for path in expected}
    for path, words in expected.items():
        _, err = procs[path].communicate(timeout=120)
        assert procs[path].returncode == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {path}")
        assert all(w in lines[0] for w in words)
    assert not (tmp_path / "runs").exists()


def test_help_and_the_dry_run_import_neither_ray_nor_torch(tmp_path: Path, write_space,
                                                           subprocess_env) -> None:
    space = write_space(tmp_path, "light", {"lr": {"grid": [0.01]}})
    probe = ("import sys\nfrom search.run import main\ntry:\n    main(sys.argv[1:])\nfinally:\n"
             "    print('heavy:', sorted({'ray', 'torch'} & set(sys.modules)))\n")
    for argv in (["--help"], [str(space), "--dry-run", "--storage", str(tmp_path / "runs")]):
        out = subprocess.run([sys.executable, "-c", probe, *argv], cwd=REPO, env=subprocess_env(),
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[-1] == "heavy: []", argv


def test_a_plan_holds_every_resolved_option(tmp_path: Path, write_space, monkeypatch, listening: str) -> None:
    space = write_space(tmp_path, "opts", {"lr": {"uniform": [0.001, 0.01]}},
                        {"algorithm": "random", "num_samples": 2, "seed": 5})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_ADDRESS", listening)
    plan = make_plan([str(space), "--storage", "s3://bucket/prefix", "--max-concurrent", "3",
                      "--reports-dir", "out", "--dry-run"])
    assert (plan.name, plan.storage, plan.address) == ("opts", "s3://bucket/prefix", listening)
    assert plan.run_dir == tmp_path / "runs" / "opts"
    assert plan.tune_storage == "s3://bucket/prefix/opts" and plan.tune_path.endswith("/opts/tune")
    assert plan.tracking_uri == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    assert runfolder.optuna_url(plan.run_dir) == f"sqlite:///{tmp_path / 'runs' / 'opts' / 'optuna.db'}"
    assert (plan.max_concurrent, plan.reports_dir, plan.data_dir) == (3, Path("out"), None)
    assert plan.command.startswith("python -m search.run ") and not plan.resume
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.name = "other"  # type: ignore[misc]
    from search.run.plan import dry_run

    assert "OptunaSearch (random sampler, seed 5)" in dry_run(plan)


def test_keep_checkpoints_comes_from_the_space_unless_the_flag_says_otherwise(tmp_path: Path, write_space,
                                                                              capsys) -> None:
    space = write_space(tmp_path, "keep", {"lr": {"grid": [0.01]}}, keep_checkpoints="all")
    argv = [str(space), "--storage", str(tmp_path / "runs"), "--dry-run"]
    assert make_plan(argv).spec.keep_checkpoints == "all"
    flagged = make_plan([*argv, "--keep-checkpoints", "none"])
    assert flagged.spec.keep_checkpoints == "none" and "--keep-checkpoints none" in flagged.command
    with pytest.raises(SystemExit) as info:
        run(*argv, "--keep-checkpoints", "last")
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1
    assert "invalid choice: 'last'" in err and "'best', 'all', 'none'" in err


def test_local_gpus_are_counted_as_ray_counts_them(tmp_path: Path, monkeypatch) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-a)'\necho '  MIG 1g.18gb Device 0:'\n"
                    "echo 'GPU 1: NVIDIA H200 (UUID: GPU-b)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert local_gpus() == 2
    for visible, n in (("1", 1), ("0,1,2", 2), ("", 0), ("NoDevFiles", 0)):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        assert local_gpus() == n, visible
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no nvidia-smi: no NVIDIA driver
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert local_gpus() == 0


def test_bad_data_dir_and_empty_resume_exit_2_before_anything(tmp_path: Path, write_space, capsys) -> None:
    space = write_space(tmp_path, "nodata", {"lr": {"grid": [0.01]}})
    storage = tmp_path / "runs"
    assert run(space, "--storage", storage, "--data-dir", tmp_path / "empty") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: MNIST not in /") and "/empty and fetching it failed" in err
    assert run(space, "--storage", storage, "--resume") == 2
    err = capsys.readouterr().err
    assert "--resume: nothing to resume" in err and len(err.strip().splitlines()) == 1
    assert not storage.exists()


def test_missing_data_is_fetched_and_offline_only_a_sample_fallback_space_runs_on_the_sample(
        tmp_path: Path, monkeypatch, capsys, write_space) -> None:
    from search.space import SpaceError, load_space

    assert load_space(REPO / "spaces" / "smoke.yaml").sample_fallback is True
    assert load_space(REPO / "spaces" / "loss.yaml").sample_fallback is False
    with pytest.raises(SpaceError, match="sample_fallback.*true or false"):
        load_space(write_space(tmp_path, "bad", {"lr": {"grid": [0.01]}}, sample_fallback="yes"))
    monkeypatch.chdir(tmp_path)  # no ./data here: the default is the per-user cache
    monkeypatch.delenv("SIMVP_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cache = tmp_path / "cache" / "simvp-search"
    fetching = f"data: no MNIST in {cache}; fetching it (python -m simvp_core.data fetch --data-dir {cache})"
    # conftest points the mirrors at a dead local port: the network is unreachable
    assert fetch_data(None, allow_sample=True) == "sample"
    out = capsys.readouterr().out.splitlines()
    assert out[0] == fetching and len(out) == 2
    assert "fetching MNIST failed" in out[1] and "bundled sample" in out[1]
    with pytest.raises(UsageError) as info:
        fetch_data(None, allow_sample=False)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"MNIST not in {str(cache)[:8]}")
    assert f"`python -m simvp_core.data fetch --data-dir {str(cache)[:8]}" in message
    assert f"/{cache.name}` online" in message and len(message) <= 290  # paths cut to fit one line
    assert capsys.readouterr().out.splitlines() == [fetching] and not cache.exists()


def _one_line(err: str) -> str:
    """The single stderr line a refused command line prints."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and len(lines[0]) <= 300, err
    return lines[0]


def _snapshot(*roots: Path) -> dict[str, bytes | None]:
    """Every path under roots -> its bytes (None for a folder): to show nothing was changed."""
    return {str(p): (p.read_bytes() if p.is_file() else None)
            for root in roots for p in [root, *root.rglob("*")] if root.exists()}


def _corrupt_mnist(folder: Path, kind: str) -> Path:
    """MNIST/raw with both image files truncated, garbage, or well-formed but not the official ones."""
    import gzip
    import struct

    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True)
    good = gzip.compress(struct.pack(">IIII", 0x803, 2, 28, 28) + bytes(2 * 784))
    body = {"truncated": good[:len(good) // 2], "garbage": b"\x13\x37not gzip" * 40, "md5": good}[kind]
    for name in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
        (raw / name).write_bytes(body)
    return folder


def test_corrupted_mnist_files_are_refused_in_one_line_before_ray_starts(
        tmp_path: Path, write_space, capsys, subprocess_env, request) -> None:
    import shutil
    import tempfile

    space = write_space(tmp_path, "corrupt", {"lr": {"grid": [0.01]}})
    storage = tmp_path / "runs"
    # a short folder: the md5 line names the file and the folder to fetch into, and pytest's own
    # tmp paths alone would take it past 300 characters
    short = Path(tempfile.mkdtemp(prefix="simvp-"))
    request.addfinalizer(lambda: shutil.rmtree(short))
    folders = {kind: _corrupt_mnist(short / kind, kind) for kind in ("truncated", "garbage", "md5")}
    before = _snapshot(*folders.values())
    proc = subprocess.run([sys.executable, "-m", "search.run", str(space), "--storage", str(storage),
                           "--data-dir", str(folders["truncated"])], cwd=REPO, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    line = _one_line(proc.stderr)
    assert "train-images-idx3-ubyte.gz: cannot decompress" in line and "intact copy" in line
    expected = {"garbage": "cannot decompress", "md5": "md5 "}
    for kind, words in expected.items():
        assert run(space, "--storage", storage, "--data-dir", folders[kind]) == 2, kind
        line = _one_line(capsys.readouterr().err)
        assert str(folders[kind] / "MNIST" / "raw") in line and words in line, line
    assert "python -m simvp_core.data fetch --data-dir" in line  # the md5 line says how to fix it
    assert _snapshot(*folders.values()) == before and not storage.exists()


def test_names_that_are_not_plain_or_are_the_storage_folders_own_files_are_refused(
        tmp_path: Path, write_space, capsys, subprocess_env) -> None:
    from search.run.plan import check_name

    space = write_space(tmp_path, "names", {"lr": {"grid": [0.01]}})
    storage = tmp_path / "runs"
    storage.mkdir()
    (storage / runfolder.MLFLOW_DB).write_bytes(b"SQLite format 3\x00 kept as it is")
    (storage / runfolder.MLARTIFACTS_DIR).mkdir()
    (storage / runfolder.MLARTIFACTS_DIR / "a.txt").write_text("artifact")
    before = _snapshot(storage, tmp_path.parent / "x")
    reserved = [runfolder.MLFLOW_DB, runfolder.MLARTIFACTS_DIR, "MLflow.db", f"{runfolder.MLFLOW_DB}-wal"]
    not_plain = ["../../x", str(tmp_path / "abs"), "", ".", "..", "a/b", "a\\b", "a b", "x\n"]
    for name in reserved + not_plain:
        with pytest.raises(UsageError) as info:
            check_name(name)
        assert "--name" in str(info.value) and "\n" not in str(info.value), name
        for dry in (("--dry-run",), ()):  # the same line from the dry run and the run
            assert run(space, "--storage", storage, "--name", name, *dry) == 2, name
            out, err = capsys.readouterr()
            assert out == "" and _one_line(err) == f"error: {info.value}", name
    assert "reserved" in str(pytest.raises(UsageError, check_name, runfolder.MLFLOW_DB).value)
    assert check_name("table1_augmentation-smoke.v2") == "table1_augmentation-smoke.v2"
    proc = subprocess.run([sys.executable, "-m", "search.run", str(space), "--storage", str(storage),
                           "--name", runfolder.MLARTIFACTS_DIR], cwd=REPO, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "--name 'mlartifacts'" in _one_line(proc.stderr)
    assert _snapshot(storage, tmp_path.parent / "x") == before


def test_a_storage_or_reports_dir_that_cannot_take_the_search_is_refused_before_it_starts(
        tmp_path: Path, write_space, capsys, subprocess_env) -> None:
    space = write_space(tmp_path, "where", {"lr": {"grid": [0.01]}})
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder\n")
    reports = tmp_path / "reports"
    (reports / "where.md").mkdir(parents=True)  # where the report would go
    storage = tmp_path / "runs"
    before = _snapshot(tmp_path)
    cases = {  # argv -> what the line says
        ("--storage", a_file): f"--storage {a_file}: an existing file, not a folder",
        ("--storage", a_file / "sub"): f"{a_file} is a file, so no folder can be made under it",
        ("--storage", "ftp://host/runs"): "unsupported URI scheme 'ftp://'",
        ("--storage", storage, "--reports-dir", a_file): f"--reports-dir {a_file}: an existing file",
        ("--storage", storage, "--reports-dir", a_file / "r"): f"{a_file} is a file, so no folder",
        ("--storage", storage, "--reports-dir", reports): "/where.md is a folder, where the report goes",
    }
    for argv, words in cases.items():
        for dry in (("--dry-run",), ()):
            assert run(space, *argv, "--data-dir", tmp_path / "nodata", *dry) == 2, argv
            out, err = capsys.readouterr()
            assert out == "" and words in _one_line(err), (argv, err)
    if os.geteuid() != 0:  # root writes anywhere: the permission case only means something as a user
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert run(space, "--storage", storage, "--reports-dir", locked / "r", "--dry-run") == 2
        assert "not writable" in _one_line(capsys.readouterr().err)
        locked.rmdir()
    proc = subprocess.run([sys.executable, "-m", "search.run", str(space), "--storage", str(a_file)],
                          cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert _one_line(proc.stderr) == f"error: {cases[('--storage', a_file)]}; pass a folder"
    assert _snapshot(tmp_path) == before


def test_refusals_naming_deep_paths_or_long_names_stay_one_line_under_300_characters(
        tmp_path: Path, write_space, monkeypatch, capsys) -> None:
    deep = tmp_path.joinpath(*["a_storage_folder_nested_far_below_the_root"] * 8)
    a_file = deep / "a_file"
    deep.mkdir(parents=True)
    a_file.write_text("not a folder\n")
    space = write_space(deep, "taken", {"lr": {"grid": [0.01]}})
    (deep / "runs" / "taken").mkdir(parents=True)
    (deep / "runs" / "taken" / "experiment.json").write_text("{}")
    (deep / "reports" / "taken.md").mkdir(parents=True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    gpu = write_space(deep, "gpu", {"lr": {"grid": [0.01]}}, resources={"cpu": 1, "gpu": 1})
    cases = {  # argv -> what the line still says
        ("--storage", deep / "runs"): "already holds a search named 'taken'",
        ("--storage", deep / "new", "--resume"): "nothing to resume at",
        ("--storage", a_file): "an existing file, not a folder",
        ("--storage", a_file / "sub" / "runs"): "is a file, so no folder can be made under it",
        ("--storage", deep / "new", "--reports-dir", deep / "reports"): "/taken.md is a folder",
        ("--storage", deep / "new", "--name", "x/" * 400): "--name 'x/x/",
        ("--storage", "ftp" * 300 + "://host/runs"): "unsupported URI scheme",
    }
    for argv, words in cases.items():
        assert run(space, *argv, "--dry-run") == 2, argv
        line = _one_line(capsys.readouterr().err)
        assert words in line, (argv, line)
    assert run(gpu, "--storage", deep / "new", "--dry-run") == 2
    assert "resources.gpu is 1 per trial" in _one_line(capsys.readouterr().err)
    assert len(str(deep)) > 300 and not (deep / "new").exists()


def test_a_bad_flag_value_and_a_folder_no_one_can_write_are_one_line_before_anything(
        tmp_path: Path, write_space, capsys) -> None:
    space = write_space(tmp_path, "flags", {"lr": {"grid": [0.01]}})
    with pytest.raises(SystemExit) as info:
        run(space, "--max-concurrent", "x", "--storage", tmp_path / "runs")
    line = _one_line(capsys.readouterr().err)
    assert info.value.code == 2 and "argument --max-concurrent: invalid int value: 'x'" in line
    if Path("/proc/self").is_dir():  # root may write anywhere but /proc: os.access alone says yes
        for dry in (("--dry-run",), ()):
            assert run(space, "--storage", tmp_path / "runs", "--reports-dir", "/proc/simvp", *dry) == 2
            assert "--reports-dir /proc/simvp: /proc is not writable (" in _one_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flags.yaml"]


def test_a_run_folder_a_live_search_holds_is_refused_naming_the_holder(tmp_path: Path, write_space, capsys) -> None:
    """One parse of the command line finds the holder, whatever else the folder would be refused for."""
    space = write_space(tmp_path, "held", {"lr": {"grid": [0.01]}})
    run_dir = tmp_path / "runs" / "held"
    run_dir.mkdir(parents=True)
    held = lock.acquire(run_dir)  # this test process: a live holder on this host
    try:
        for extra in ([], ["--resume"], ["--dry-run"], ["--resume", "--dry-run"]):
            assert main([space, "--storage", tmp_path / "runs", *extra]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and f"pid {os.getpid()}" in err[0] and "running search" in err[0], err
    finally:
        held.release()
