"""`python -m search.run SPACE`: a search space on Ray Tune (grid, random or Optuna; ASHA),
tracked in MLflow, written to `runs/<name>/`, reported in `reports/<name>.md`.

Everything that can be wrong with the command line is checked before Ray starts (exit code 2,
one line on stderr), and an existing run folder is only ever continued with --resume.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune.search.optuna import OptunaSearch

from search.space import SearchSpec, SpaceError, describe, load_space

if TYPE_CHECKING:
    from search.tracking import Tracker
    from search.trainable import Fault

REPO = Path(__file__).resolve().parents[1]
METRIC_COLUMNS = ("epoch", "loss", "val_mse", "val_ssim", "test_mse")


class UsageError(ValueError):
    """A bad command line or run folder: reported as one line, exit code 2, before Ray starts."""


@dataclass
class Plan:
    """Everything a search needs, resolved and checked before Ray starts."""

    spec: SearchSpec
    name: str
    run_dir: Path  # the driver's files: results.parquet, experiment.json, optuna.db, predictions/
    tune_storage: str  # RunConfig.storage_path: run_dir, or <URI>/<name> for remote storage
    tracking_uri: str
    data_dir: str
    resume: bool
    previous: dict[str, Any]  # experiment.json of the search being resumed
    faults: tuple[Fault, ...] = ()  # the $SIMVP_FAULT_INJECT test hook, parsed


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m search.run", description=__doc__.split("\n\n")[0])
    p.add_argument("space", help="a space file, e.g. spaces/smoke.yaml")
    p.add_argument("--smoke", action="store_true", help="the space scaled to CPU minutes (<= 4 trials)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit; starts nothing")
    p.add_argument("--name", help="run name (default: the space's experiment, + '-smoke' with --smoke)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted search of this name")
    p.add_argument("--address", help="join a Ray cluster ('auto' or host:port; default $RAY_ADDRESS, "
                                     "else an embedded local Ray)")
    p.add_argument("--storage", default="runs",
                   help="folder or URI (s3://...) holding <name>/ (default: runs)")
    p.add_argument("--shared-storage", action="store_true",
                   help="--storage is a folder mounted at the same path on every node (NFS); "
                        "required for a local folder on a multi-node cluster")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<storage>/mlflow.db)")
    p.add_argument("--max-concurrent", type=int, help="at most this many trials at once")
    p.add_argument("--data-dir", help="folder holding MNIST/raw (default: $SIMVP_DATA_DIR, else ./data if it has "
                        "MNIST, else ~/.cache/simvp-search; fetched there when missing)")
    p.add_argument("--reports-dir", type=Path, default=Path("reports"), help="default: reports")
    return p


def _is_uri(storage: str) -> bool:
    return "://" in storage


def _local_root(storage: str) -> Path:
    """Where the driver keeps its files: the storage folder, or ./runs for remote storage."""
    return Path("runs" if _is_uri(storage) else storage).resolve()


def default_tracking_uri(storage: str) -> str:
    """The default MLflow store: an SQLite file beside the run folders."""
    return f"sqlite:///{_local_root(storage) / 'mlflow.db'}"


def _load_spec(args: argparse.Namespace) -> SearchSpec:
    try:
        spec = load_space(args.space)
        return spec.smoke() if args.smoke else spec
    except SpaceError as e:
        raise UsageError(str(e)) from e


def space_hash(spec: SearchSpec) -> str:
    """A fingerprint of what the space file asks for: a resumed search must ask the same."""
    text = json.dumps(spec.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _data_dir(arg: str | None, allow_sample: bool) -> str:
    """The MNIST folder (simvp_core.data.resolve_data_dir), fetched there when missing; if that
    fails, the bundled sample when the space allows it (sample_fallback), else a UsageError."""
    from simvp_core.fetch import ensure_mnist

    try:
        return ensure_mnist(arg, allow_sample)
    except (OSError, ValueError) as e:  # no data and no fetch, an unwritable folder, a wrong file
        raise UsageError(str(e)) from e


def _check_local_resources(spec: SearchSpec) -> None:
    """An embedded Ray has this machine's CPUs and GPUs; a trial asking for more never starts."""
    cpus = os.cpu_count() or 1
    if spec.cpu > cpus:
        raise UsageError(f"{spec.path}: resources.cpu is {spec.cpu:g} per trial but this machine has "
                         f"{cpus} CPUs; use --smoke (1 CPU per trial) or join a cluster with --address")
    if spec.gpu > 0:
        import torch

        if spec.gpu > torch.cuda.device_count():
            raise UsageError(f"{spec.path}: resources.gpu is {spec.gpu:g} per trial but this machine has "
                             f"{torch.cuda.device_count()} GPUs; use --smoke (CPU only) or join a "
                             "cluster with --address")


def make_plan(args: argparse.Namespace) -> Plan:
    """Validate the command line against the file system; raises UsageError, starts nothing."""
    from search import results
    from search.trainable import faults_from_env

    spec = _load_spec(args)
    name = args.name or spec.experiment  # spec.smoke() already names it <experiment>-smoke
    if not name or "/" in name or name in (".", ".."):
        raise UsageError(f"--name {name!r}: expected a plain folder name")
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise UsageError(f"--max-concurrent {args.max_concurrent}: expected an integer >= 1")
    run_dir = _local_root(args.storage) / name
    tune_storage = f"{args.storage.rstrip('/')}/{name}" if _is_uri(args.storage) else str(run_dir)
    previous: dict[str, Any] = {}
    if args.resume:
        from ray import tune

        tune_path = f"{tune_storage}/tune"
        if not (run_dir / results.EXPERIMENT_FILE).is_file() or not tune.Tuner.can_restore(tune_path):
            raise UsageError(f"--resume: nothing to resume at {run_dir} (no experiment.json or no Tune "
                             f"state in {tune_path}); run without --resume to start the search")
        previous = results.read_experiment(run_dir)
        if previous.get("space_hash") not in (None, space_hash(spec)):
            raise UsageError(f"--resume: {args.space} no longer says what {run_dir} was started with "
                             "(space file or --smoke changed); restore it, or start a new --name")
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise UsageError(f"{run_dir} already holds a search named {name!r}; pass --resume to "
                         "continue it, or --name NEW to start another")
    if not (args.address or os.environ.get("RAY_ADDRESS")):
        _check_local_resources(spec)
    tracking_uri = (args.tracking_uri or previous.get("tracking_uri")
                    or default_tracking_uri(args.storage))
    try:
        faults = faults_from_env()
    except ValueError as e:
        raise UsageError(str(e)) from e
    data_dir = _data_dir(args.data_dir, spec.sample_fallback)
    return Plan(spec, name, run_dir, tune_storage, tracking_uri, data_dir, args.resume, previous,
                faults)


def dry_run(args: argparse.Namespace) -> int:
    spec = _load_spec(args)
    name = args.name or spec.experiment
    cpus = os.cpu_count() or 1
    if args.address or os.environ.get("RAY_ADDRESS"):
        where = f"Ray cluster at {args.address or os.environ['RAY_ADDRESS']}"
    elif spec.cpu > cpus:
        where = (f"this machine has {cpus} CPUs but a trial needs {spec.cpu:g}: run it on a cluster "
                 "(--address) or with --smoke")
    else:
        where = f"embedded local Ray with {cpus} CPUs: up to {int(cpus // spec.cpu)} trial(s) at once"
    storage = args.storage if _is_uri(args.storage) else _local_root(args.storage)
    algorithm = {"grid": "BasicVariantGenerator over the grid points",
                 "random": f"BasicVariantGenerator sampling {spec.num_samples} configurations",
                 "optuna": f"OptunaSearch (TPE, seed {spec.seed}) in {storage}/{name}/optuna.db"}
    print(describe(spec))
    print(f"search algorithm: {algorithm[spec.algorithm]}")
    print(f"resources: {where}" + (f"; --max-concurrent {args.max_concurrent}" if args.max_concurrent else ""))
    print(f"run folder: {storage}/{name}")
    print(f"tracking: {args.tracking_uri or default_tracking_uri(args.storage)}")
    print("dry run: nothing started")
    return 0


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def experiment_info(plan: Plan, command: str, tracker: Tracker) -> dict[str, Any]:
    """experiment.json at the start of a session; a resumed search keeps its start and wall time."""
    from search import results
    from simvp_core import data

    spec = plan.spec
    return {
        "experiment": plan.name,
        "space": spec.path,
        "space_hash": space_hash(spec),
        "description": spec.description,
        "searched": results.searched_names(spec),
        "blocks": list(spec.blocks),
        "published": [dict(p) for p in spec.published],
        "algorithm": spec.algorithm,
        "num_samples": spec.num_samples,
        "scheduler": spec.scheduler,
        "grace_period": spec.grace_period,
        "reduction_factor": spec.reduction_factor,
        "max_epochs": spec.max_epochs,
        "metric": spec.metric,
        "mode": spec.mode,
        "repeats": spec.repeats,
        "resources": {"cpu": spec.cpu, "gpu": spec.gpu},
        "max_failures": spec.max_failures,
        "optuna_study": plan.name if spec.algorithm == "optuna" else None,
        "command": plan.previous.get("command", command),  # the command that started the search
        "resume_commands": plan.previous.get("resume_commands", []) + ([command] if plan.resume else []),
        "git_commit": _git_commit(),
        "data_dir": plan.data_dir if plan.data_dir == data.SAMPLE else str(Path(plan.data_dir).resolve()),
        "tune_storage": f"{plan.tune_storage}/tune",
        "test_set": plan.previous.get("test_set", ""),
        "started": plan.previous.get("started", _now()),
        "finished": None,
        "wall_seconds": plan.previous.get("wall_seconds", 0.0),
        "tracking_uri": plan.tracking_uri,
        "mlflow_parent_run_id": tracker.parent_run_id,
    }


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch that accepts results for trials its study has already finished. The study
    (optuna.db) records a finished trial at once, Tune's state only every snapshot: after a killed
    driver, Tune may report a trial's last epoch again, which Optuna would refuse with an error
    that stops the whole search."""

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        import optuna

        try:
            super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # the study already holds this trial's outcome


def param_space(spec: SearchSpec) -> dict[str, Any]:
    """Tune's param_space. Every trial's config is the flat dict of its searched values; a grid
    point that leaves a conditional param out carries None ('not applied')."""
    if spec.algorithm == "grid":
        return dict.fromkeys(k for point in spec.grid_points() for k in point)
    if spec.algorithm == "random":
        from search.space import tune_param_space

        return tune_param_space(spec)
    return {}  # OptunaSearch holds the space itself


def search_algorithm(spec: SearchSpec, name: str, run_dir: Path, max_concurrent: int | None) -> Any:
    """A new search algorithm (never built on resume: OptunaSearch would enqueue its
    points_to_evaluate into the stored study a second time). BasicVariantGenerator limits
    concurrency itself (Tune ignores max_concurrent_trials for it); OptunaSearch gets Tune's
    ConcurrencyLimiter through TuneConfig."""
    from ray.tune.search.basic_variant import BasicVariantGenerator

    if spec.algorithm == "grid":
        return BasicVariantGenerator(points_to_evaluate=spec.grid_points(),
                                     max_concurrent=max_concurrent or 0)
    points = [dict(p) for p in spec.points_to_evaluate] or None
    if spec.algorithm == "random":
        return BasicVariantGenerator(points_to_evaluate=points, random_state=spec.seed,
                                     max_concurrent=max_concurrent or 0)
    import optuna

    from search.space import optuna_space

    storage = optuna.storages.RDBStorage(f"sqlite:///{run_dir / 'optuna.db'}")
    return ResumableOptunaSearch(optuna_space(spec), metric=spec.metric, mode=spec.mode,
                        points_to_evaluate=points, sampler=optuna.samplers.TPESampler(seed=spec.seed),
                        study_name=name, storage=storage)


def _tuner(plan: Plan, args: argparse.Namespace, trainable: Any, key: str):
    """A new Tuner, or the interrupted one restored (searcher and scheduler state included)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from search import results, tracking

    spec = plan.spec
    space = param_space(spec)
    if plan.resume:
        if spec.algorithm == "optuna":
            unfinished = [t.config for t in _trials(f"{plan.tune_storage}/tune", spec)
                          if t.status not in ("TERMINATED", "ERROR")]
            release_orphan_optuna_trials(plan, unfinished)
        return tune.Tuner.restore(f"{plan.tune_storage}/tune", trainable, resume_errored=True,
                                  param_space=space)
    scheduler = None
    if spec.scheduler == "asha":
        # time_attr "epoch" (reported by the trainable) stays right across restores and retries
        scheduler = ASHAScheduler(time_attr="epoch", max_t=spec.max_epochs,
                                  grace_period=spec.grace_period,
                                  reduction_factor=spec.reduction_factor)
    reporter = tune.CLIReporter(
        parameter_columns=list(space) or results.searched_names(spec),
        metric_columns=list(dict.fromkeys((*METRIC_COLUMNS, spec.metric))),
        sort_by_metric=True, max_report_frequency=10)
    search_alg = search_algorithm(spec, plan.name, plan.run_dir, args.max_concurrent)
    return tune.Tuner(
        trainable, param_space=space,
        tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.mode, search_alg=search_alg,
                                    scheduler=scheduler, num_samples=spec.num_samples,
                                    max_concurrent_trials=args.max_concurrent
                                    if spec.algorithm == "optuna" else None, reuse_actors=True),
        run_config=tune.RunConfig(
            storage_path=plan.tune_storage, name="tune", verbose=1, progress_reporter=reporter,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[tracking.TrialLogger(key)]))


def _start_ray(address: str | None) -> bool:
    """Join the cluster (--address or $RAY_ADDRESS), reuse a running Ray, or start a local one.
    Returns whether this call started the connection (and so should shut it down)."""
    import ray

    if ray.is_initialized():
        print("Ray: using the Ray instance already running in this process")
        return False
    if address or os.environ.get("RAY_ADDRESS"):
        import search
        import simvp_core

        # ship the two packages so workers on other nodes can import the trainable
        modules = [str(Path(m.__file__).parent) for m in (search, simvp_core)]
        ray.init(address=address, runtime_env={"py_modules": modules})
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False)
    return True


def _trials(tune_path: str, spec: SearchSpec) -> list:
    """Tune's final record of every trial (status, failures, last result, latest checkpoint)."""
    from ray import tune

    return list(tune.ExperimentAnalysis(tune_path, default_metric=spec.metric,
                                        default_mode=spec.mode).trials)


def _best(df: Any, spec: SearchSpec) -> Any:
    done = df[(df["status"] == "completed") & df[spec.metric].notna()]
    if done.empty:
        return None
    ranked = done.sort_values(spec.metric, ascending=spec.mode == "min")
    return ranked.iloc[0]


def _fmt(v: Any) -> str:
    return f"{v:.5g}" if isinstance(v, float) and not math.isnan(v) else str(v)


def print_summary(plan: Plan, df: Any, tracker: Tracker, seconds: float) -> None:
    """The end of a search in a few lines: counts, the best configuration, where things are."""
    from search import results, tracking

    spec = plan.spec
    counts = df["status"].value_counts()
    by_status = ", ".join(f"{int(counts[s])} {s}" for s in results.STATUSES if s in counts)
    print(f"\n== search {plan.name} finished: {len(df)} trials ({by_status or 'none'}) "
          f"in {seconds:.0f} s ==")
    best = _best(df, spec)
    if best is None:
        print("best: no trial completed")
    else:
        names = [n for n in results.searched_names(spec) if best.get(n) is not None]
        params = " ".join(f"{n}={_fmt(best[n])}" for n in names) or "(base configuration)"
        print(f"best ({spec.metric}, {spec.mode}): trial {best['trial_id']}: {params}")
        print("  val  " + "  ".join(f"{m} {_fmt(best[f'val_{m}'])}" for m in results.METRICS))
        print("  test " + "  ".join(f"{m} {_fmt(best[f'test_{m}'])}" for m in results.METRICS)
              + f"  ({best['test_set']})")
    print(f"results: {plan.run_dir / results.RESULTS_FILE}")
    if tracker.enabled:
        print(f"MLflow:  {plan.tracking_uri} (parent run {tracker.parent_run_id}); "
              f"view with: {tracking.ui_command(plan.tracking_uri, tracker.experiment_id)}")
    else:
        print(f"MLflow:  off ({tracker.off_reason})")


def run_search(plan: Plan, args: argparse.Namespace, command: str) -> int:
    """Run (or resume) the search, then write results, sync MLflow and build the report."""
    from ray import tune

    from search import results, tracking
    from search.trainable import train_trial
    from simvp_core import data

    import ray

    from search import cluster

    spec, start = plan.spec, time.time()
    started_ray = _start_ray(args.address)
    try:
        print(cluster.describe_cluster())
        try:  # before anything is written: a local folder cannot serve several machines
            cluster.check_storage(args.storage, args.shared_storage, len(cluster.alive_nodes()))
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        reason = tracking.probe(plan.tracking_uri)
        same_store = plan.previous.get("tracking_uri") == plan.tracking_uri
        tracker = tracking.Tracker(
            plan.tracking_uri, plan.name, spec,
            parent_run_id=plan.previous.get("mlflow_parent_run_id") if same_store else None,
            artifact_location=(plan.run_dir.parent / "mlartifacts" / plan.name).as_uri()
            if plan.tracking_uri.startswith("sqlite:") else None)
        if reason:
            tracker.turn_off(reason)
        fixed = {k: v for k, v in spec.base.to_dict().items() if k not in results.searched_names(spec)}
        tracker.start_search(spec.path, {"space_file": spec.path, "command": command,
                                         "git_commit": _git_commit()}, fixed)
        info = experiment_info(plan, command, tracker)
        results.write_experiment(plan.run_dir, info)
        key = str(plan.run_dir)
        tracking.register(key, tracker)

        train_digits = data.load_mnist("train", plan.data_dir)
        test_digits = (None if data.has_standard_test_set(plan.data_dir)
                       else data.load_mnist("test", plan.data_dir))
        trainable = tune.with_resources(
            tune.with_parameters(train_trial, spec=spec, train_digits=train_digits,
                                 test_digits=test_digits, data_dir=plan.data_dir,
                                 faults=plan.faults),
            {"cpu": spec.cpu, "gpu": spec.gpu})
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic table shows the searched params
        # one checkpoint kept per trial forces a state snapshot per epoch (what resume relies on);
        # Tune warns about that when epochs are short
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
        tuner = _tuner(plan, args, trainable, key)
        tuner.fit()
        trials = _trials(f"{plan.tune_storage}/tune", spec)
    finally:
        if started_ray:
            ray.shutdown()
    return finish(plan, args, trials, tracker, info, start)


def release_orphan_optuna_trials(plan: Plan, live_configs: list[dict[str, Any]]) -> None:
    """Optuna trials asked for after Tune's last state snapshot (a killed driver) belong to no
    Tune trial and would stay RUNNING for ever: mark them FAIL, and queue a listed point among
    them again so it is still evaluated. live_configs: the configs of Tune's unfinished trials."""
    import optuna

    running = optuna.trial.TrialState.RUNNING
    study = optuna.load_study(study_name=plan.name,
                              storage=f"sqlite:///{plan.run_dir / 'optuna.db'}")
    live = list(live_configs)
    for trial in study.get_trials(deepcopy=False, states=(running,)):
        if trial.params in live:
            live.remove(trial.params)
            continue
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        if live_configs and "fixed_params" in trial.system_attrs:
            study.enqueue_trial(trial.system_attrs["fixed_params"])


def finish(plan: Plan, args: argparse.Namespace, trials: list, tracker: Tracker,
           info: dict[str, Any], start: float) -> int:
    """Results first (so they survive any tracking trouble), then MLflow, then the report."""
    from search import results

    spec = plan.spec
    rows = results.write_results(trials, spec, plan.run_dir)
    ids = tracker.sync(rows, plan.run_dir)
    if ids:
        for row in rows:
            row["mlflow_run_id"] = ids.get(row["trial_id"], "")
        results.save_results(rows, plan.run_dir)
    df = results.read_results(plan.run_dir)
    seconds = time.time() - start
    sets = sorted({s for s in df["test_set"] if s})
    info.update(finished=_now(), wall_seconds=info["wall_seconds"] + seconds,
                test_set="; ".join(sets), mlflow_parent_run_id=tracker.parent_run_id)
    results.write_experiment(plan.run_dir, info)
    best = _best(df, spec)
    counts = df["status"].value_counts()
    tracker.finish_search({**{f"trials_{s}": float(counts.get(s, 0)) for s in results.STATUSES},
                           **({f"best_{spec.metric}": float(best[spec.metric]),
                               "best_test_mse": float(best["test_mse"])} if best is not None else {})})
    print_summary(plan, df, tracker, seconds)
    unfinished = [t.trial_id for t in trials if t.status not in ("TERMINATED", "ERROR")]
    if unfinished:
        print(f"interrupted: {len(unfinished)} trial(s) did not finish; continue with --resume")
    elif spec.algorithm == "optuna":
        release_orphan_optuna_trials(plan, [])
    try:
        from search.report import attach_to_mlflow, build_report

        md = build_report(plan.run_dir, args.reports_dir)
        print(f"report:  {md}")
        if tracker.enabled:
            attach_to_mlflow(plan.run_dir, md)
    except Exception as e:  # the search itself succeeded; say what went wrong with the report
        print(f"report:  FAILED ({type(e).__name__}: {' '.join(str(e).split())[:300]}); the search "
              f"results are complete; retry with python -m search.report {plan.run_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        if args.dry_run:
            return dry_run(args)
        plan = make_plan(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    command = shlex.join(["python", "-m", "search.run", *argv])
    return run_search(plan, args, command)


if __name__ == "__main__":
    # run the imported module, not this __main__ copy, so that what Tune pickles for resume
    # (the searcher) refers to search.run.*, importable by whichever process resumes the search
    from search.run import main as search_main

    sys.exit(search_main())
