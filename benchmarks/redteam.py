"""Issue 15's hardening cases (and issue 23's, benchmarks.redteam2), each run as a fresh subprocess
in a temp dir and measured (benchmarks.measure): exit code, stderr lines (library warnings count),
the longest line on stdout or stderr, peak memory (PSS) of the process tree, wall time, and whether
anything already written changed.
`python -m benchmarks.redteam [--data-dir DIR] [--issue 15|23|all] [--out FILE]`.

Peak memory: every 50 ms, the PSS (RSS with shared pages split among their sharers; RSS where PSS
cannot be read) of the process and all its descendants (psutil `children(recursive=True)`),
summed; the largest sum is the peak. Signals go to the driver's pid
(as `kill -INT PID`), and once to its whole process group (as Ctrl-C in a terminal); whatever of the
process group is left after a case is killed. Nothing is written into the checkout: every case runs
in the temp dir, with its storage and reports there.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import redteam2
from benchmarks.machine import cpu_model
from benchmarks.measure import Case, Row, failures, measure, table

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests/search/space/broken_spaces"
TINY = {"preset": "simvpv2", "c_s": 4, "c_t": 8, "n_t": 1, "train_size": 8, "val_size": 4,
        "test_size": 4, "batch_size": 4, "eval_batch_size": 4, "epochs": 2}
TRAIN_TINY = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items() if k != "preset"]
INTERRUPTED = "interrupted; continue with --resume"
# the one bad MNIST file of each corrupted data dir: half a .gz, and a valid .gz whose md5 is not
# the official one (recompressed); the other three files are the real ones
BAD_FILES = {"truncated_gz": "train-images-idx3-ubyte.gz", "wrong_md5": "t10k-images-idx3-ubyte.gz"}


def space_file(path: Path, name: str, base: dict, **top: object) -> Path:
    """A one-point grid space over `base`, written to path."""
    import yaml

    doc = {"experiment": name, "description": f"redteam: {name}", "base": base,
           "space": {"act": {"grid": ["gelu"]}}, "search": {"algorithm": "grid"},
           "scheduler": {"type": "none"}, "metric": "val_mse", "resources": {"cpu": 1, "gpu": 0},
           "max_failures": 0, **top}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def deep_folder(root: Path, length: int = 250) -> Path:
    """A folder under root whose path is `length` characters (49-character components)."""
    path = root
    while len(str(path)) < length - 60:
        path = path / ("d" * 49)
    return path / ("e" * max(1, length - len(str(path)) - 1))


def paths(tmp: Path) -> dict[str, Path]:
    """Where `prepare` puts what the cases stand on."""
    p = {k: tmp / f"{k}.yaml" for k in ("tiny", "slow", "epochs_1e20", "epochs_1.0e20")}
    p.update(runs=tmp / "runs", afile=tmp / "afile", trained=tmp / "trained", big=tmp / "over_the_cap.yaml")
    p.update({f"ckpt_{k}": tmp / f"ckpt_{k}" for k in ("truncated", "garbage", "foreign")})
    for where, root in (("", tmp / "data"), ("deep_", deep_folder(tmp / "deep", 237))):
        p.update({where + k: root / k for k in BAD_FILES})
    return p


def prepare(p: dict[str, Path], data: Path, env: dict[str, str]) -> None:
    """Make them: space files (one over the size cap), a finished search in runs/, a finished training
    and its checkpoint truncated / garbage / foreign, the corrupted data dirs (also under a deep path)."""
    import torch

    for key, base in (("tiny", TINY), ("slow", {**TINY, "train_size": 64, "epochs": 400}),
                      ("epochs_1e20", {**TINY, "epochs": "1e20"}),  # YAML 1.1: a string
                      ("epochs_1.0e20", {**TINY, "epochs": 1.0e20})):  # a float
        space_file(p[key], key.replace(".", "_"), base)
    p["afile"].write_text("a regular file\n")
    p["big"].write_text(p["tiny"].read_text() + "# padding\n" * 110_000)  # 1.1 MB: comments after the space
    for argv in (["-m", "search.run", str(p["tiny"]), "--storage", str(p["runs"]), "--data-dir", str(data),
                  "--reports-dir", str(p["runs"].parent / "reports")],
                 ["-m", "simvp_core.train", *TRAIN_TINY, "--data-dir", str(data), "--out", str(p["trained"])]):
        done = subprocess.run([sys.executable, *argv], cwd=p["runs"].parent, env=env, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"setup failed: {' '.join(argv)}: {done.stderr.strip().splitlines()[-1:]}")
    ckpt = (p["trained"] / "checkpoint.pt").read_bytes()
    for kind, content in (("truncated", ckpt[: len(ckpt) // 2]), ("garbage", os.urandom(4096)), ("foreign", None)):
        shutil.copytree(p["trained"], p[f"ckpt_{kind}"])
        if content is None:
            torch.save({"weights": torch.zeros(3), "note": "not a trainer checkpoint"},
                       p[f"ckpt_{kind}"] / "checkpoint.pt")
        else:
            (p[f"ckpt_{kind}"] / "checkpoint.pt").write_bytes(content)
    for key, victim in (k for k in BAD_FILES.items()):
        for folder in (p[key], p["deep_" + key]):
            raw = folder / "MNIST/raw"
            raw.mkdir(parents=True)
            for f in (data / "MNIST/raw").glob("*.gz"):
                shutil.copyfile(f, raw / f.name)
            good = (raw / victim).read_bytes()
            (raw / victim).write_bytes(good[: len(good) // 2] if key == "truncated_gz" else
                                       gzip.compress(gzip.decompress(good), compresslevel=1, mtime=0))


# the corpus files also run with --dry-run (issue 15 names them); the others as a real run only
DRY_TOO = ("grid_10_params_10_values", "grid_million_points", "limits/yaml_billion_laughs")


def corpus_cases(tmp: Path) -> list[Case]:
    """Every broken-space file as a real run (a few also dry); the refusal must name its `# error:`
    place, leave the file as it is and write nothing."""
    cases = []
    storage, reports = tmp / "corpus_runs", tmp / "corpus_reports"
    for f in sorted(CORPUS.glob("*.yaml")) + sorted((CORPUS / "limits").glob("*.yaml")):
        where = f.read_text().splitlines()[0].removeprefix("# error:").strip()
        stem = f.relative_to(CORPUS).with_suffix("").as_posix()
        for mode in ("real", "dry") if stem in DRY_TOO else ("real",):
            argv = ["-m", "search.run", str(f), "--storage", str(storage), "--reports-dir", str(reports),
                    *(["--dry-run"] if mode == "dry" else [])]
            cases.append(Case(f"corpus/{stem} ({mode})", argv, must_say=where, once=False, guard=[f],
                              absent=[storage, reports]))
    return cases


def cases(tmp: Path, data: Path, p: dict[str, Path]) -> list[Case]:
    """Every case of issue 15 but the corpus, in order."""
    runs, reports = p["runs"], tmp / "reports"
    search = ["-m", "search.run"]
    train = ["-m", "simvp_core.train", *TRAIN_TINY]

    def tiny(*extra: str, storage: Path = runs) -> list[str]:
        return [*search, str(p["tiny"]), "--storage", str(storage), "--reports-dir", str(reports),
                "--data-dir", str(data), *extra]

    out = [Case("space file of 1.1 MB (cap 1 MB)", [*search, str(p["big"]), "--storage", str(runs),
                "--data-dir", str(data)], guard=[runs, p["big"]], must_say="1 MB", once=False)]
    out += [Case(f"space base.epochs: {k.split('_')[1]} (real)", [*search, str(p[k]), "--storage", str(runs),
                "--data-dir", str(data)], guard=[runs]) for k in ("epochs_1e20", "epochs_1.0e20")]
    out += [Case("search.run --max-concurrent x (a bad flag value)", tiny("--max-concurrent", "x"), guard=[runs])]
    out += [Case("train --epochs 1e20",
                 [*train, "--epochs", "1e20", "--data-dir", str(data), "--out", str(tmp / "t1")]),
            Case("train --lr inf", [*train, "--lr", "inf", "--data-dir", str(data), "--out", str(tmp / "t2")]),
            Case("train --lr nan", [*train, "--lr", "nan", "--data-dir", str(data), "--out", str(tmp / "t3")])]
    for deep in ("", "deep_"):
        for kind in ("truncated_gz", "wrong_md5"):
            d = p[deep + kind]
            label = f"{'deep path ' if deep else ''}{kind} ({len(str(d))}-char dir)"
            out.append(Case(f"search.run smoke.yaml, {label}",
                            [*search, str(REPO / "spaces/smoke.yaml"), "--name", f"data_{deep}{kind}",
                             "--storage", str(tmp / "data_runs"), "--data-dir", str(d)], guard=[d]))
            out.append(Case(f"train, {label}", [*train, "--data-dir", str(d), "--out", str(tmp / f"o_{deep}{kind}")],
                            guard=[d]))
    for kind in ("truncated", "garbage", "foreign"):
        d = p[f"ckpt_{kind}"]
        out.append(Case(f"train --resume, {kind} checkpoint",
                        [*train, "--epochs", "3", "--data-dir", str(data), "--out", str(d), "--resume"], guard=[d]))
    names = ["mlflow.db", "mlflow.db-journal", "mlflow.db-wal", "mlflow.db-shm", "mlartifacts", "MLflow.DB",
             "../../x", str(tmp / "absolute_name"), ".", "..", "tiny"]
    out += [Case(f"--name {n if not n.startswith('/') else '/ABS/absolute_name'}", tiny("--name", n),
                 guard=[runs]) for n in names]
    out += [Case(f"--dry-run --name {label}", tiny("--name", n, "--dry-run"), guard=[runs],
                 absent=[tmp / "absolute_name"])
            for n, label in (("../../x", "../../x"), (str(tmp / "absolute_name"), "/ABS/absolute_name"))]
    out += [Case("--storage is a file", tiny(storage=p["afile"]), guard=[p["afile"]]),
            Case("--reports-dir under a regular file", [*search, str(p["tiny"]), "--name", "rep1", "--storage",
                 str(runs), "--reports-dir", str(p["afile"] / "reports"), "--data-dir", str(data)],
                 guard=[runs, p["afile"]], absent=[runs / "rep1"]),
            Case("--reports-dir /proc/redteam (unwritable)", [*search, str(p["tiny"]), "--name", "rep2", "--storage",
                 str(runs), "--reports-dir", "/proc/redteam", "--data-dir", str(data)], guard=[runs],
                 absent=[runs / "rep2"]),
            Case("--dry-run of a GPU space (loss.yaml, gpu 0.25) with no GPU", [*search, str(REPO / "spaces/loss.yaml"),
                 "--dry-run", "--storage", str(runs)], guard=[runs], must_say="has 0 GPUs",
                 env={"CUDA_VISIBLE_DEVICES": ""}),  # no GPU, whatever this machine has
            # by design (README): the search finishes without MLflow and says so once
            Case("dead MLflow server (--tracking-uri http://127.0.0.1:9)",
                 tiny("--name", "deadml", "--tracking-uri", "http://127.0.0.1:9"), expect=0, refusal=False,
                 must_say="MLflow logging is off", guard=[runs / "tiny"], timeout=180)]
    out += signal_cases(tmp, data, p)
    out.append(Case("all trials error (tests/search/faulty_driver.py raise_at_epoch=1)",
                    [str(REPO / "tests/search/faulty_driver.py"), "raise_at_epoch=1", str(p["tiny"]), "--name",
                     "allerr", "--storage", str(runs), "--reports-dir", str(reports), "--data-dir", str(data)],
                    expect=1, refusal=False, must_say="error: all 1 trials errored", timeout=180))
    return out


def signal_cases(tmp: Path, data: Path, p: dict[str, Path]) -> list[Case]:
    """A long search SIGINTed (a second search of its name tried first, while its lock is held), one
    SIGINTed as a terminal's Ctrl-C does (its whole process group) and one SIGTERMed; each signalled
    3 s after its lock and Tune folder exist."""
    storage, result = tmp / "sig_runs", []
    for sig, name in ((signal.SIGINT, "busy"), (signal.SIGINT, "ctrl-c"), (signal.SIGTERM, "term")):
        run_dir = storage / name
        argv = ["-m", "search.run", str(p["slow"]), "--name", name, "--storage", str(storage),
                "--reports-dir", str(tmp / "reports"), "--data-dir", str(data)]
        second = Case("second search of a running --name (lock held)", argv,
                      guard=[run_dir / "search.lock", run_dir / "experiment.json"])
        to = "its process group (Ctrl-C)" if name == "ctrl-c" else "the driver's pid"
        result.append(Case(f"{signal.Signals(sig).name} to {to} of a running search", argv,
                           expect=128 + sig, refusal=False, must_say=INTERRUPTED, timeout=240,
                           signal_when=(sig, ready_after(run_dir)), keep=run_dir, group=name == "ctrl-c",
                           during=second if name == "busy" else None))
    return result


def ready_after(run_dir: Path, delay: float = 3.0) -> Callable[[], bool]:
    """A predicate: true `delay` s after run_dir/search.lock and run_dir/tune both exist."""
    seen: list[float] = []

    def ready() -> bool:
        if not seen and (run_dir / "search.lock").exists() and (run_dir / "tune").exists():
            seen.append(time.perf_counter())
        return bool(seen) and time.perf_counter() - seen[0] > delay
    return ready


def machine(load_before: float) -> str:
    """Where and when, with the load average before and after (other work inflates the times)."""
    return (f"{datetime.date.today().isoformat()}, {cpu_model()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, load average {load_before:.1f} at the start and "
            f"{os.getloadavg()[0]:.1f} at the end")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.redteam",
                                     description="Every bad input of issue 15, measured.")
    parser.add_argument("--data-dir", type=Path,
                        default=os.environ.get("SIMVP_DATA_DIR") or REPO.parent / "shared/data",
                        help="a folder holding the real MNIST/raw (default: $SIMVP_DATA_DIR, else ../shared/data)")
    parser.add_argument("--only", help="run only the cases whose name matches this regular expression")
    parser.add_argument("--issue", choices=("15", "23", "all"), default="all",
                        help="the cases of issue 15 (and its corpus), of issue 23 (benchmarks.redteam2), or all")
    parser.add_argument("--out", type=Path, help="also write the table (and the failures) to this file")
    args = parser.parse_args(argv)
    load, start = os.getloadavg()[0], time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SIMVP_DATA_DIR")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="redteam-") as name:
        tmp = Path(name)
        data = args.data_dir.resolve()
        p = paths(tmp)

        def chosen(case: Case) -> bool:
            return not args.only or re.search(args.only, case.name) is not None
        todo = [c for c in corpus_cases(tmp) + cases(tmp, data, p) if chosen(c)] if args.issue != "23" else []
        if any(not c.name.startswith("corpus/") for c in todo):
            prepare(p, data, env)
        if args.issue != "15":
            todo += [c for c in redteam2.cases(tmp, data, redteam2.prepare(tmp, data, env)) if chosen(c)]
        try:
            for case in todo:
                for row in measure(case, tmp, env):
                    rows.append(row)
                    print(f"{row.case}: {'FAIL' if row.fails else 'pass'} ({row.seconds:.1f} s)",
                          file=sys.stderr, flush=True)
        finally:
            redteam2.unmount()
    text = (f"Measured {machine(load)}; the whole run took {time.perf_counter() - start:.0f} s.\n\n"
            f"{table(rows)}\n")
    if any(r.fails for r in rows):
        text += f"\nFailing cases:\n\n{failures(rows)}\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 1 if any(r.fails for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
