"""Issue 23's hardening cases for benchmarks.redteam, one or more per class (names start with the
class: `c1 memory`, `c2 overwrite`, `c3 hang`, `c4 quadratic`, `c5 cluster aliases`, `c6 run folder`,
`c7 disk`, `c8 other`); `python -m benchmarks.redteam --only '^c[1-8] '` runs them alone.

What they stand on is made by `prepare` in the red team's temp folder: finished searches (a grid
and a random search with its optuna.db), a finished training, model files (good and damaged), FIFOs,
big space files, and, where this process may mount (root), a full 64 kB tmpfs, an 8 MB tmpfs the
search fills, and a read-only bind mount (unmounted at exit). A gRPC-looking server that never
answers Ray, and a silent TCP listener, run in this process while the cases do.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.measure import Case

REPO = Path(__file__).resolve().parents[1]
TINY = {"preset": "simvpv2", "c_s": 4, "c_t": 8, "n_t": 1, "train_size": 8, "val_size": 4,
        "test_size": 4, "batch_size": 4, "eval_batch_size": 4, "epochs": 2}
TRAIN_TINY = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items() if k != "preset"]
CONTINUE = "free some space and continue with --resume"


def space(path: Path, name: str, base: dict | None = None, space_: dict | None = None, **top: Any) -> Path:
    """A space file (JSON, which is YAML) over the tiny base."""
    doc = {"experiment": name, "description": f"redteam 23: {name}", "base": {**TINY, **(base or {})},
           "space": space_ or {"act": {"grid": ["gelu"]}}, "search": {"algorithm": "grid"},
           "scheduler": {"type": "none"}, "metric": "val_mse", "resources": {"cpu": 1, "gpu": 0},
           "max_failures": 0, **top}
    path.write_text(json.dumps(doc))
    return path


def _serve(answer: bytes | None) -> int:
    """A TCP server on 127.0.0.1 for the rest of the process: `answer` to each connection (an
    HTTP/2 SETTINGS frame: what a gRPC server says first), or nothing at all (None). Its port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            conn, _ = sock.accept()
            if answer:
                conn.sendall(answer)
            held.append(conn)  # kept open, silent from then on

    threading.Thread(target=serve, daemon=True).start()
    return sock.getsockname()[1]


def _mount(*args: str) -> bool:
    return os.geteuid() == 0 and subprocess.run(["mount", *args], capture_output=True).returncode == 0


MOUNTED: list[Path] = []


def _mounted(folder: Path, *args: str) -> Path | None:
    """folder mounted with `mount ARGS folder` (see unmount), or None where that is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    if not _mount(*args, str(folder)):
        return None
    MOUNTED.append(folder)
    return folder


@atexit.register
def unmount() -> None:
    """Unmount what prepare mounted (before the temp folder is removed; at exit in any case)."""
    while MOUNTED:
        subprocess.run(["umount", "-l", str(MOUNTED.pop())], capture_output=True)


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"setup failed: {' '.join(argv)}: {done.stderr.strip().splitlines()[-1:]}")


def prepare(tmp: Path, data: Path, env: dict[str, str]) -> dict[str, Any]:
    """Everything the cases read: see the module's docstring."""
    import torch

    p: dict[str, Any] = {"root": tmp / "c23"}
    root = p["root"]
    root.mkdir()
    p["tiny"] = space(root / "tiny.yaml", "tiny")
    p["opt"] = space(root / "opt.yaml", "opt", {"epochs": 1}, {"lr": {"loguniform": [0.001, 0.01]}},
                     search={"algorithm": "random", "num_samples": 2, "seed": 1})
    run(["-m", "search.run", str(p["opt"]), "--storage", str(root / "runs"), "--data-dir", str(data),
         "--reports-dir", str(root / "reports")], root, env)
    run(["-m", "simvp_core.train", *TRAIN_TINY, "--data-dir", str(data), "--out", str(root / "trained")], root, env)
    p["ckpt"] = root / "trained" / "checkpoint.pt"
    run(["-m", "simvp_core.convert", "to-openstl", str(p["ckpt"]), str(root / "openstl.ckpt")], root, env)
    run(["-m", "simvp_core.convert", "from-openstl", str(root / "openstl.ckpt"), str(root / "model.pt")], root, env)
    model = torch.load(root / "model.pt", weights_only=True)
    damaged = {"complex": {**model, "model": {k: v.to(torch.complex64) for k, v in model["model"].items()}},
               "overrides": {**model, "overrides": "c_s=4"}, "weights": {**model, "model": "weights"}}
    for name, content in damaged.items():
        torch.save(content, root / f"model_{name}.pt")
    state = torch.load(p["ckpt"], weights_only=True)
    (root / "epochs").mkdir()
    torch.save({**state, "epoch": 10**30}, root / "epochs" / "checkpoint.pt")
    shutil.copy(root / "trained" / "metrics.json", root / "epochs")
    (root / "notes.txt").write_text("my notes\n")
    os.link(p["ckpt"], root / "hard_link.pt")
    (root / "afile").write_text("a regular file\n")
    for name in ("space.fifo", "ckpt.fifo", "cluster.fifo"):
        os.mkfifo(root / name)
    (root / "fifo_out").mkdir()
    os.mkfifo(root / "fifo_out" / "checkpoint.pt")
    _run_folders(p, root)
    _spaces(p, root)
    _cluster_files(root)
    p["grpc"] = _serve(bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
    p["silent"] = _serve(None)
    p["full"] = _mounted(root / "full", "-t", "tmpfs", "-o", "size=64k", "tmpfs")
    p["fills"] = _mounted(root / "fills", "-t", "tmpfs", "-o", "size=8m", "tmpfs")
    (root / "ro_source").mkdir()
    ro = _mounted(root / "ro", "--bind", str(root / "ro_source"))
    p["ro"] = ro if ro and _mount("-o", "remount,bind,ro", str(ro)) else None
    return p


def _run_folders(p: dict[str, Any], root: Path) -> None:
    """Copies of the finished random search, each with one file damaged."""
    good = root / "runs" / "opt"
    damage: dict[str, Callable[[Path], None]] = {
        "optuna_truncated": lambda d: (d / "optuna.db").write_bytes((good / "optuna.db").read_bytes()[:4096]),
        "optuna_text": lambda d: (d / "optuna.db").write_text("not a database"),
        "experiment_types": lambda d: (d / "experiment.json").write_text(
            json.dumps({**json.loads((good / "experiment.json").read_text()), "wall_seconds": "abc"})),
        "experiment_invalid": lambda d: (d / "experiment.json").write_text("{half"),
        "experiment_deep": lambda d: (d / "experiment.json").write_text("[" * 200_000 + "]" * 200_000),
        "lock_fifo": lambda d: os.mkfifo(d / "search.lock"),
        "lock_garbage": lambda d: (d / "search.lock").write_text("garbage"),
        "lock_huge_pid": lambda d: (d / "search.lock").write_text(json.dumps(
            {"pid": 10**30, "host": socket.gethostname()})),
        "results_truncated": lambda d: (d / "results.parquet").write_bytes(
            (good / "results.parquet").read_bytes()[:100]),
        "results_fifo": lambda d: ((d / "results.parquet").unlink(), os.mkfifo(d / "results.parquet")),
        "tuner_garbage": lambda d: (d / "tune" / "tuner.pkl").write_bytes(b"garbage"),
        "tune_state_garbage": lambda d: [f.write_text("garbage") for f in (d / "tune").glob("experiment_state*")],
        "ctrl_description": lambda d: (d / "experiment.json").write_text(json.dumps(
            {**json.loads((good / "experiment.json").read_text()), "description": "a\nb \x1b[2J\x07"})),
    }
    for name, change in damage.items():
        store = root / f"store_{name}"
        (store / "opt").mkdir(parents=True)
        shutil.copytree(good, store / "opt", dirs_exist_ok=True, symlinks=True)
        shutil.copy(root / "runs" / "mlflow.db", store)  # the MLflow parent run a --resume would reopen
        change(store / "opt")
        p[f"store_{name}"] = store


def _spaces(p: dict[str, Any], root: Path) -> None:
    """Space files: big products of sizes, quadratic inputs, YAML that cannot be read safely."""
    for name, base in (("val_1e6", {"val_size": 1_000_000}), ("batch_65536", {"batch_size": 65_536}),
                       ("model_huge", {"c_t": 8192, "n_t": 64})):
        p[name] = space(root / f"{name}.yaml", name, base)
    p["two_at_once"] = space(root / "two_at_once.yaml", "two", space_={"lr": {"grid": [0.01, 0.02]}})
    values = [round(0.001 + i * 1e-6, 9) for i in range(10_000)]
    long = {"lr": {"choice": values}}
    search = {"algorithm": "random", "num_samples": 10_000, "points_to_evaluate": [{"lr": v} for v in values]}
    published = [{"match": {"lr": v}, "source": "t", "mse": 1.0} for v in values[::2]]
    p["long_ok"] = space(root / "long_ok.yaml", "long_ok", space_=long, search=search, published=published)
    dup = {"lr": {"choice": [*values[:-1], values[1234] + 1e-15]}}
    p["long_dup"] = space(root / "long_dup.yaml", "long_dup", space_=dup, search={**search, "num_samples": 9_999,
                                                                                    "points_to_evaluate": []})
    grid = {"lr": {"grid": values[:100]}, "lambda_gdl": {"grid": [i / 100 for i in range(100)]}}
    rows = [{"match": {"lr": values[i % 100], "lambda_gdl": (i // 100) / 100}, "source": "t", "mse": 1.0}
            for i in range(0, 10_000, 1)]
    p["grid_published"] = space(root / "grid_published.yaml", "grid_published", space_=grid, published=rows)
    (root / "deep.yaml").write_text("base: " + "[" * 5000 + "]" * 5000 + "\n")
    (root / "bigint.yaml").write_text("base:\n  epochs: " + "9" * 5000 + "\nsearch: {algorithm: grid}\n")
    (root / "nonstr.yaml").write_text("1: 2\nsearch: {algorithm: grid}\n")
    p["long_name"] = space(root / "long_name.yaml", "x" * 300)
    p["ctrl"] = space(root / "ctrl.yaml", "ctrl")
    ctrl = json.loads(p["ctrl"].read_text())
    ctrl["description"] = "first line\nsecond line \x1b[31mred\x07"
    p["ctrl"].write_text(json.dumps(ctrl))


def _cluster_files(root: Path) -> None:
    (root / "laughs_cluster.yaml").write_text("cluster_name: x\na: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join(['*' + q] * 10)}]\n" for q, n in zip("abcdefg", "bcdefgh")))
    (root / "deep_cluster.yaml").write_text("cluster_name: " + "[" * 10_000 + "]" * 10_000 + "\n")


def started_after(delay: float) -> Callable[[], bool]:
    """A predicate true `delay` s after its first call (the case's start)."""
    first: list[float] = []

    def ready() -> bool:
        first.append(time.perf_counter())
        return first[-1] - first[0] > delay
    return ready


def cases(tmp: Path, data: Path, p: dict[str, Any]) -> list[Case]:
    """Every case of issue 23, class by class."""
    root = p["root"]
    search, train = ["-m", "search.run"], ["-m", "simvp_core.train", *TRAIN_TINY]
    evaluate, convert = ["-m", "simvp_core.evaluate"], ["-m", "simvp_core.convert"]
    d = str(data)

    def s(spec: Path, *extra: str, storage: Path = root / "new_runs") -> list[str]:
        return [*search, str(spec), "--storage", str(storage), "--reports-dir", str(root / "reports"),
                "--data-dir", d, *extra]

    out = [
        Case("c1 memory: search val_size 1,000,000 (dry run)", s(p["val_1e6"], "--dry-run"), must_say="lower val_size"),
        Case("c1 memory: search val_size 1,000,000", s(p["val_1e6"]), must_say="lower val_size",
             absent=[root / "new_runs"]),
        Case("c1 memory: search batch_size 65,536", s(p["batch_65536"]), must_say="lower batch_size"),
        Case("c1 memory: search c_t 8192 x n_t 64", s(p["model_huge"]), must_say="lower the model's c_t"),
        Case("c1 memory: two trials at once over a stated cap", s(p["two_at_once"]),
             env={"SIMVP_MEMORY_LIMIT_MB": "800"}, must_say="--max-concurrent 1"),
        Case("c1 memory: train --batch-size 65536", [*train, "--batch-size", "65536", "--data-dir", d, "--out",
                                                     str(root / "t1")], must_say="lower batch_size",
             absent=[root / "t1"]),
        Case("c1 memory: train --val-size 1000000", [*train, "--val-size", "1000000", "--data-dir", d, "--out",
                                                     str(root / "t2")], must_say="lower val_size",
             absent=[root / "t2"]),
        Case("c1 memory: evaluate --test-size 1000000", [*evaluate, "--checkpoint", str(root / "model.pt"),
                                                          "--data-dir", d, "--test-size", "1000000"],
             must_say="lower --test-size"),
        Case("c1 memory: evaluate --test-size 10000000 (over its bound)",
             [*evaluate, "--checkpoint", str(root / "model.pt"), "--data-dir", d, "--test-size", "10000000"],
             must_say="expected an integer in [1, 1000000]"),
        Case("c2 overwrite: convert to-openstl CKPT CKPT (same path)",
             [*convert, "to-openstl", str(p["ckpt"]), str(p["ckpt"])], guard=[p["ckpt"]],
             must_say="the output is the input"),
        Case("c2 overwrite: convert to-openstl CKPT hard link of CKPT",
             [*convert, "to-openstl", str(p["ckpt"]), str(root / "hard_link.pt")], guard=[p["ckpt"]],
             must_say="the output is the input"),
        Case("c2 overwrite: convert from-openstl X over a trainer checkpoint",
             [*convert, "from-openstl", str(root / "openstl.ckpt"), str(p["ckpt"])], guard=[p["ckpt"]],
             must_say="holds a trainer checkpoint"),
        Case("c2 overwrite: convert to-openstl over a text file",
             [*convert, "to-openstl", str(root / "model.pt"), str(root / "notes.txt")],
             guard=[root / "notes.txt"], must_say="holds something else"),
        Case("c3 hang: space file is a FIFO", s(root / "space.fifo"), must_say="a FIFO"),
        Case("c3 hang: space file is a FIFO (dry run)", s(root / "space.fifo", "--dry-run"), must_say="a FIFO"),
        Case("c3 hang: train --resume, checkpoint.pt is a FIFO",
             [*train, "--data-dir", d, "--out", str(root / "fifo_out"), "--resume"], must_say="a FIFO"),
        Case("c3 hang: evaluate --checkpoint FIFO", [*evaluate, "--checkpoint", str(root / "ckpt.fifo"),
                                                     "--data-dir", d], must_say="a FIFO"),
        Case("c3 hang: evaluate --checkpoint /dev/zero", [*evaluate, "--checkpoint", "/dev/zero", "--data-dir", d],
             must_say="a character device"),
        Case("c3 hang: search.lock is a FIFO (--resume)", s(p["opt"], "--resume", storage=p["store_lock_fifo"]),
             guard=[p["store_lock_fifo"]], must_say="a FIFO"),
        Case("c3 hang: cluster file is a FIFO", ["-m", "search.cluster_files", str(root / "cluster.fifo")],
             must_say="a FIFO"),
        Case("c3 hang: --address where nothing listens", s(p["tiny"], "--address", "127.0.0.1:9"),
             must_say="no Ray cluster at"),
        Case("c3 hang: --address of a silent listener", s(p["tiny"], "--address", f"127.0.0.1:{p['silent']}"),
             must_say="no answer"),
        Case("c3 hang: SIGTERM while joining a gRPC server that is no Ray",
             s(p["tiny"], "--address", f"127.0.0.1:{p['grpc']}"), expect=143, refusal=False,
             must_say="interrupted: SIGTERM", signal_when=(15, started_after(12.0)), timeout=60),
        Case("c4 quadratic: 10,000 choices, points and 5,000 published rows (dry run, accepted)",
             s(p["long_ok"], "--dry-run"), expect=0, refusal=False, must_say="dry run: nothing started"),
        Case("c4 quadratic: 9,999 choices, the last a duplicate", s(p["long_dup"]),
             must_say="choice[9999]: duplicate value"),
        Case("c4 quadratic: a 10,000-point grid, 10,000 published rows (dry run, accepted)",
             s(p["grid_published"], "--dry-run"), expect=0, refusal=False, must_say="published: 10000 row(s)"),
        Case("c5 cluster aliases: a billion laughs", ["-m", "search.cluster_files", str(root / "laughs_cluster.yaml")],
             must_say="expand it to over 100,000 values"),
        Case("c5 cluster aliases: nested 10,000 deep", ["-m", "search.cluster_files",
                                                        str(root / "deep_cluster.yaml")], must_say="nest", once=False),
    ]
    for name, words in (("optuna_truncated", "optuna.db cannot be read"), ("optuna_text", "not an SQLite database"),
                        ("experiment_types", "wall_seconds is a string"), ("experiment_invalid", "not valid JSON"),
                        ("experiment_deep", "nested too deeply"), ("lock_garbage", "cannot check"),
                        ("results_truncated", "results.parquet cannot be read"), ("results_fifo", "a FIFO"),
                        ("tuner_garbage", "Tune's state in"), ("tune_state_garbage", "Tune's state in")):
        store = p[f"store_{name}"]
        out.append(Case(f"c6 run folder: --resume, {name.replace('_', ' ')}", s(p["opt"], "--resume", storage=store),
                        guard=[store], must_say=words))
    out += [
        Case("c6 run folder: --resume, lock of a pid 10**30 (stale: taken over)",
             s(p["opt"], "--resume", "--dry-run", storage=p["store_lock_huge_pid"]), expect=0, refusal=False,
             guard=[p["store_lock_huge_pid"]], must_say="dry run: nothing started"),
        Case("c6 run folder: search.report, results.parquet truncated",
             ["-m", "search.report", str(p["store_results_truncated"] / "opt"), "--reports-dir", str(root / "rep6")],
             guard=[p["store_results_truncated"]], must_say="cannot be read", absent=[root / "rep6"]),
        Case("c6 run folder: search.report, experiment.json of wrong types",
             ["-m", "search.report", str(p["store_experiment_types"] / "opt"), "--reports-dir", str(root / "rep6")],
             guard=[p["store_experiment_types"]], must_say="wall_seconds", absent=[root / "rep6"]),
    ]
    out += _disk_cases(root, p, s, train, convert, d)
    out += [
        Case("c8 other: space nested 5,000 deep", s(root / "deep.yaml"), must_say="nest"),
        Case("c8 other: space integer of 5,000 digits", s(root / "bigint.yaml"), must_say="5,000 digits"),
        Case("c8 other: space with a non-string key", s(root / "nonstr.yaml"), must_say="key 1 is a int"),
        Case("c8 other: --name of 300 characters", s(p["tiny"], "--name", "n" * 300), must_say="at most 100"),
        Case("c8 other: experiment of 300 characters (dry run)", s(p["long_name"], "--dry-run"),
             must_say="at most 100"),
        Case("c8 other: --name with a newline and an escape", s(p["tiny"], "--name", "a\nb\x1b[31m"),
             must_say="expected a plain folder name", clean=[root / "notes.txt"]),
        Case("c8 other: evaluate, complex weights", [*evaluate, "--checkpoint", str(root / "model_complex.pt"),
                                                     "--data-dir", d], must_say="complex, not real"),
        Case("c8 other: evaluate, overrides not a mapping", [*evaluate, "--checkpoint",
                                                             str(root / "model_overrides.pt"), "--data-dir", d],
             must_say="a malformed model file"),
        Case("c8 other: evaluate, weights a string", [*evaluate, "--checkpoint", str(root / "model_weights.pt"),
                                                      "--data-dir", d], must_say="not a state dict"),
        Case("c8 other: evaluate, a checkpoint claiming 10**30 epochs",
             [*evaluate, "--checkpoint", str(root / "epochs" / "checkpoint.pt"), "--data-dir", d],
             must_say="outside [0, epochs]"),
        Case("c8 other: train --resume, a checkpoint claiming 10**30 epochs",
             [*train, "--data-dir", d, "--out", str(root / "epochs"), "--resume"], guard=[root / "epochs"],
             must_say="claims 1000000000000000000000000000000 epochs"),
        Case("c8 other: convert OUT under a file", [*convert, "to-openstl", str(root / "model.pt"),
                                                    str(root / "afile" / "x.ckpt")], must_say="is a file"),
        Case("c8 other: train --out under a file", [*train, "--data-dir", d, "--out", str(root / "afile" / "x")],
             must_say="is a file"),
        Case("c8 other: SIMVP_MNIST_MIRRORS malformed (train)", [*train, "--data-dir", d, "--out", str(root / "t3")],
             env={"SIMVP_MNIST_MIRRORS": "ftp://x, http://[::1"}, must_say="$SIMVP_MNIST_MIRRORS",
             absent=[root / "t3"]),
        Case("c8 other: SIMVP_MNIST_MIRRORS malformed (search)", s(p["tiny"], "--name", "mirrors"),
             env={"SIMVP_MNIST_MIRRORS": "not a url"}, must_say="$SIMVP_MNIST_MIRRORS"),
        Case("c8 other: --tracking-uri malformed", s(p["tiny"], "--tracking-uri", "http://[x"),
             must_say="--tracking-uri"),
        Case("c8 other: --tracking-uri of an unknown scheme", s(p["tiny"], "--tracking-uri", "foo://x"),
             must_say="unknown scheme"),
        Case("c8 other: SIMVP_MAX_TRIALS=-1", s(p["tiny"]), env={"SIMVP_MAX_TRIALS": "-1"},
             must_say="$SIMVP_MAX_TRIALS"),
        Case("c8 other: SIMVP_MAX_TRIALS=abc", s(p["tiny"], "--dry-run"), env={"SIMVP_MAX_TRIALS": "abc"},
             must_say="$SIMVP_MAX_TRIALS"),
        Case("c8 other: description with newlines and escapes (dry run, accepted)", s(p["ctrl"], "--dry-run"),
             expect=0, refusal=False, must_say="first line\\nsecond line", clean=[root / "ctrl.yaml"]),
        Case("c8 other: a report of a description with escapes (accepted)",
             ["-m", "search.report", str(p["store_ctrl_description"] / "opt"), "--reports-dir", str(root / "rep8")],
             expect=0, refusal=False, must_say="opt.md", clean=[root / "rep8" / "opt.md"]),
        Case("c8 other: dry run, garbage lock", s(p["opt"], "--resume", "--dry-run", storage=p["store_lock_garbage"]),
             guard=[p["store_lock_garbage"]], must_say="cannot check"),
        Case("c8 other: dry run, reports under a file", s(p["tiny"], "--dry-run", "--reports-dir",
                                                           str(root / "afile" / "r")), must_say="is a file"),
    ]
    return out


def _disk_cases(root: Path, p: dict[str, Any], s: Callable, train: list[str], convert: list[str],
                d: str) -> list[Case]:
    """Class 7 on real mounts: a full tmpfs, one the search fills, a read-only bind mount."""
    out = []
    if p["full"]:
        out += [Case("c7 disk: --storage on a full disk", s(p["tiny"], storage=p["full"] / "runs"),
                     must_say="free on its disk"),
                Case("c7 disk: train --out on a full disk", [*train, "--data-dir", d, "--out", str(p["full"] / "t")],
                     must_say="no space left on the device"),
                Case("c7 disk: fetch MNIST into a full disk", ["-m", "simvp_core.data", "fetch", "--data-dir",
                                                              str(p["full"] / "data")],
                     env={"SIMVP_MNIST_MIRRORS": f"file://{d}/MNIST/raw/"}, must_say="no space left on the device")]
    if p["fills"]:
        fill = space(root / "fill.yaml", "fill", {"epochs": 3}, {"lr": {"grid": [0.001, 0.002, 0.003, 0.004]}})
        out.append(Case("c7 disk: a search fills its 8 MB disk", s(fill, "--max-concurrent", "1",
                                                                     storage=p["fills"] / "runs"),
                        refusal=False, must_say=CONTINUE, once=False, timeout=240))
    if p["ro"]:
        out += [Case("c7 disk: --storage on a read-only mount", s(p["tiny"], storage=p["ro"] / "runs"),
                     must_say="not writable"),
                Case("c7 disk: convert OUT on a read-only mount", [*convert, "to-openstl", str(root / "model.pt"),
                                                                   str(p["ro"] / "x.ckpt")],
                     must_say="read-only file system"),
                Case("c7 disk: train --out on a read-only mount", [*train, "--data-dir", d, "--out",
                                                                   str(p["ro"] / "t")], must_say="read-only")]
    if not (p["full"] and p["fills"] and p["ro"]):
        print("c7 disk: some cases left out: mounting tmpfs and bind mounts needs root", file=sys.stderr)
    return out


__all__ = ["prepare", "cases", "unmount"]
