"""Runs a checked Plan on Ray Tune: joins or starts Ray, enters the run folder (lock, MLflow search,
experiment.json), builds the searcher and scheduler (or restores them), fits the Tuner and hands
Tune's trials to search.run.finish.

Every searcher but the grid is Ray's OptunaSearch over the space's define-by-run function, with
the study in optuna.db: TPE for `optuna`, Optuna's RandomSampler for `random`, so both resume the
same way. The grid is Tune's BasicVariantGenerator over the grid points.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

import search
import simvp_core
from search import budget, runfolder, tracking
from search.run import (
    cluster,
    connect,
    console,
    disk_guard,
    finish,
    local_ray,
    preflight,
    progress,
    resume,
    warm,
    watchdog,
)
from search.run.interrupts import Interrupts
from search.run.plan import Plan, UsageError, check_storage, is_uri, local_root
from search.run.searchers import ResumableOptunaSearch, SeedRepeater
from search.runfolder import lock
from search.space import SearchSpec, optuna_space
from search.tracking.tune_callback import TrialLogger, register
from search.trainable import train_trial
from simvp_core import data
from simvp_core.files import FileError
from simvp_core.oneline import print_error, short_path

REPO = Path(__file__).resolve().parents[2]
JOIN_TIMEOUT_S = 120  # ray.init: a local start takes about 10 s, a join (and its package upload) less than a minute
METRIC_COLUMNS = ("epoch", "loss", "val_mse", "val_ssim", "test_mse")


def run_search(plan: Plan, trainable: Callable[..., None] = train_trial) -> int:
    """Run (or resume) the search with `trainable` (search.trainable.train_trial's signature),
    then write results, sync MLflow and build the report (search.run.finish); returns the exit
    code. Holds the run folder's lock from entering it to the end; SIGINT and SIGTERM end the
    search the same way (Tune checkpoints, what exists is written, exit 130 / 143)."""
    start = time.time()
    with console.Console(plan.verbose) as out:
        started_ray = start_ray(plan.address)
        out.route_workers()
        # after ray.init, which sets a SIGTERM handler of its own; the watchdog ends what a SIGKILL leaves
        with Interrupts() as stop, watchdog.watch(plan.run_dir, since=start), Session(out=out) as session:
            try:
                session.open(plan)
                fit(plan, session, trainable, stop)
            except (UsageError, lock.LockHeld, FileError) as e:  # refused, or a write failed: what was there is kept
                session.abandon(plan)
                print_error(e)
                return 2
            except KeyboardInterrupt:
                stop.signal = stop.signal or signal.SIGINT
            except BaseException:
                session.abandon(plan)  # no MLflow run left RUNNING, experiment.json as it was
                raise
            finally:
                if started_ray:
                    ray.shutdown()
            try:
                code = conclude(plan, session, start, stop.signal)
            except FileError as e:  # the disk filled or went read-only while the results were written
                print_error(f"{e}; the trials' checkpoints are kept: continue with --resume once it is fixed")
                return 128 + stop.signal if stop.signal else 2
            if stop.reason:  # stopped before the disk filled (search.run.disk_guard)
                print_error(stop.reason)
                return 2
            return code


@dataclass
class Session:
    """What this driver holds of the run folder: its lock, the MLflow search and experiment.json as
    written at the start (each None until taken), and the console whose logs go there; the lock
    is released when the session ends."""

    out: console.Console
    held: lock.Lock | None = None
    tracker: tracking.Tracker | None = None
    info: dict[str, Any] | None = None

    def open(self, plan: Plan) -> None:
        """Enter the run folder: the storage checked against the live nodes (a local folder cannot
        serve several machines) and the lock taken before anything is written there; then the
        start summary."""
        nodes = cluster.alive_nodes()
        check_storage(plan, len(nodes))
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        self.held = lock.acquire(plan.run_dir, takeover=plan.resume)
        self.out.attach(plan.run_dir, f"search {plan.name}: {lock.holder_text(self.held.info)}: {plan.command}")
        self.tracker = start_tracking(plan)
        self.info = experiment_info(plan, self.tracker)
        runfolder.write_experiment(plan.run_dir, self.info)
        console.say(console.start_summary(plan, nodes, cluster.describe_cluster(), self.tracker, self.out.log))

    def abandon(self, plan: Plan) -> None:
        """A session that failed before its fit ended: its MLflow parent run ended (not left RUNNING)
        and a resumed search's experiment.json put back as it was (best effort: the failure that
        brought us here is what gets reported)."""
        if self.tracker is not None and self.info is not None:
            with contextlib.suppress(Exception):
                self.tracker.finish_search({}, status="FINISHED" if plan.previous.get("finished") else "KILLED")
        if self.info is not None and plan.previous:
            with contextlib.suppress(Exception):
                runfolder.write_experiment(plan.run_dir, dict(plan.previous))

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.held is not None:
            self.held.release()


def fit(plan: Plan, session: Session, trainable: Callable[..., None], stop: Interrupts) -> None:
    """Tune's fit of a new search, or of the interrupted one restored; the MLflow callback finds
    this session's Tracker by the run folder's path."""
    key = str(plan.run_dir)
    register(key, session.tracker)
    disk_guard.register(key, stop)
    bound = with_data(plan, trainable)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic table shows the searched params
    # one checkpoint kept per trial forces a state snapshot per epoch (what resume relies on);
    # Tune warns about that when epochs are short
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    space = param_space(plan.spec)
    tuner = restore(plan, bound, space) if plan.resume else new_tuner(plan, bound, space, key)
    with stop.fitting():
        tuner.fit()


def restore(plan: Plan, trainable: Any, space: dict[str, Any]) -> tune.Tuner:
    """The interrupted search's Tuner; a Tune state that cannot be restored (its pickles damaged)
    is a UsageError: the session is abandoned with everything as it was."""
    try:
        return resume.restore_tuner(plan, trainable, space)
    except Exception as e:  # Tune and pickle raise many kinds on a damaged state
        raise UsageError(f"--resume: Tune cannot restore {short_path(plan.tune_path)} ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:80]}); it is damaged: start the search anew (--name NEW)") from e


def conclude(plan: Plan, session: Session, start: float, sig: int | None) -> int:
    """After the fit (or a signal): write what Tune recorded (search.run.finish), or say that a
    search interrupted before Tune's first snapshot left nothing to write."""
    try:
        trials = resume.tune_trials(plan)
    except Exception:
        if not sig:
            raise
        trials = None  # interrupted before Tune's first state snapshot
    if trials is None or session.info is None:
        return interrupted_early(plan, session.tracker, sig)
    try:
        return finish.finish(plan, trials, session.tracker, session.info, start, interrupted=sig)
    except KeyboardInterrupt:  # a signal while writing: what was written stays
        sig = sig or signal.SIGINT
        print(f"interrupted ({signal.Signals(sig).name}) while writing the results; "
              "continue with --resume", file=sys.stderr)
        return 128 + sig


def interrupted_early(plan: Plan, tracker: tracking.Tracker | None, sig: int) -> int:
    """A signal before Tune recorded anything: nothing to write or resume."""
    if tracker is not None:
        tracker.finish_search({}, status="KILLED")
    if plan.resume:
        print(f"interrupted ({signal.Signals(sig).name}) before the search started again; "
              "continue with --resume", file=sys.stderr)
    else:
        print(f"interrupted ({signal.Signals(sig).name}) before the search started; nothing to "
              f"continue: remove {plan.run_dir} and run it again", file=sys.stderr)
    return 128 + sig


def start_ray(address: str | None) -> bool:
    """Join the cluster at `address`, reuse a running Ray, or start a local one. Returns whether
    this call started the connection (and so should shut it down)."""
    if ray.is_initialized():
        print("Ray: using the Ray instance already running in this process")
        return False
    if address:
        # ship the two packages so workers on other nodes can import the trainable
        modules = [str(Path(m.__file__).parent) for m in (search, simvp_core)]
        with connect.bounded(f"joining the Ray cluster at {address}", JOIN_TIMEOUT_S,
                             f"--address {address}: the Ray cluster did not take this driver within "
                             f"{JOIN_TIMEOUT_S} s; check it with ray status on its head"):
            ray.init(address=address, runtime_env={"py_modules": modules})
    else:
        with connect.bounded("starting Ray", JOIN_TIMEOUT_S, f"Ray did not start within {JOIN_TIMEOUT_S} s; "
                             "see /tmp/ray/session_latest/logs"):
            local_ray.init()  # loopback only, token authentication as Ray sets it
    return True


def start_tracking(plan: Plan) -> tracking.Tracker:
    """The search's MLflow parent run: a new one, or the resumed search's when the store is the same."""
    spec = plan.spec
    same_store = plan.previous.get("tracking_uri") == plan.tracking_uri
    tracker = tracking.Tracker(
        plan.tracking_uri, plan.name, spec,
        parent_run_id=plan.previous.get("mlflow_parent_run_id") if same_store else None,
        artifact_location=runfolder.artifact_location(plan.run_dir)
        if plan.tracking_uri.startswith("sqlite:") else None)
    reason = tracking.probe(plan.tracking_uri)
    if reason:
        tracker.turn_off(reason)
    fixed = {k: v for k, v in spec.base.to_dict().items() if k not in spec.searched}
    tracker.start_search(spec.path, {"space_file": spec.path, "command": plan.command,
                                     "git_commit": git_commit()}, fixed)
    return tracker


def experiment_info(plan: Plan, tracker: tracking.Tracker) -> dict[str, Any]:
    """experiment.json at the start of a session; a resumed search keeps its start and wall time."""
    spec, previous = plan.spec, plan.previous
    return {
        "experiment": plan.name,
        "space": spec.path,
        "space_hash": spec.fingerprint(),
        "description": spec.description,
        "searched": spec.searched,
        "blocks": list(spec.blocks),
        "published": [dict(p) for p in spec.published],
        "algorithm": spec.algorithm,
        "num_samples": spec.num_samples,
        "scheduler": spec.scheduler,
        "grace_period": spec.grace_period,
        "reduction_factor": spec.reduction_factor,
        "max_epochs": spec.max_epochs,
        "planned_trials": spec.total_trials(),
        "planned_trial_epochs": spec.worst_case_epochs(),
        "metric": spec.metric,
        "mode": spec.mode,
        "repeats": spec.repeats,
        "resources": {"cpu": spec.cpu, "gpu": spec.gpu},
        "max_failures": spec.max_failures,
        "optuna_study": plan.name if spec.algorithm in runfolder.OPTUNA_ALGORITHMS else None,
        "budget": dict(spec.budget),
        "over_budget": [{"config": config, "reason": why} for config, why in spec.over_budget],
        "warm_start": previous.get("warm_start", []) if plan.resume else [s.record() for s in plan.warm],
        "command": previous.get("command", plan.command),  # the command that started the search
        "resume_commands": previous.get("resume_commands", []) + ([plan.command] if plan.resume else []),
        "git_commit": git_commit(),
        "data_dir": plan.data_dir if plan.data_dir == data.SAMPLE else str(Path(plan.data_dir).resolve()),
        "tune_storage": plan.tune_path,
        "test_set": previous.get("test_set", ""),
        "started": previous.get("started", runfolder.timestamp()),
        "finished": None,
        "wall_seconds": previous.get("wall_seconds", 0.0),
        "tracking_uri": plan.tracking_uri,
        "mlflow_parent_run_id": tracker.parent_run_id,
        "mlflow_experiment_id": tracker.experiment_id,
        "report": str((plan.reports_dir / f"{plan.name}.md").resolve()),
    }


def with_data(plan: Plan, trainable: Callable[..., None]) -> Any:
    """The trainable with the spec and the MNIST digits bound (shipped once through the object
    store) and the space's resources per trial."""
    spec = plan.spec
    train_digits = data.load_mnist("train", plan.data_dir)
    test_digits = (None if data.has_standard_test_set(plan.data_dir)
                   else data.load_mnist("test", plan.data_dir))
    bound = tune.with_parameters(trainable, spec=spec, train_digits=train_digits,
                                 test_digits=test_digits, data_dir=plan.data_dir)
    return tune.with_resources(bound, {"cpu": spec.cpu, "gpu": spec.gpu})


def param_space(spec: SearchSpec) -> dict[str, Any]:
    """Tune's param_space. A grid trial's config is the flat dict of its searched values (None:
    a conditional param not applied); OptunaSearch holds the space itself."""
    if spec.algorithm == "grid":
        return dict.fromkeys(k for point in spec.grid_points() for k in point)
    return {}


def searcher(plan: Plan) -> Any:
    """A new search algorithm (never built on resume: OptunaSearch would enqueue its
    points_to_evaluate into the stored study a second time). BasicVariantGenerator limits
    concurrency itself (Tune ignores max_concurrent_trials for it); OptunaSearch gets Tune's
    ConcurrencyLimiter through TuneConfig. With repeats, SeedRepeater runs each suggestion once
    per seed and tells the study the mean. A budget is checked on every suggestion; the plan's
    warm start seeds the new study."""
    spec = plan.spec
    if spec.algorithm == "grid":
        return BasicVariantGenerator(points_to_evaluate=spec.grid_points(),
                                     max_concurrent=plan.max_concurrent or 0)
    sampler = (optuna.samplers.RandomSampler(seed=spec.seed) if spec.algorithm == "random"
               else optuna.samplers.TPESampler(seed=spec.seed))
    found = ResumableOptunaSearch(optuna_space(spec), metric=spec.metric, mode=spec.mode,
                                  points_to_evaluate=[dict(p) for p in spec.points_to_evaluate] or None,
                                  sampler=sampler, study_name=plan.name,
                                  storage=runfolder.optuna_storage(plan.run_dir),
                                  max_epochs=spec.max_epochs, budget=budget.of(spec))
    if plan.warm:
        found.seed(warm.trials(spec, plan.warm))
    return SeedRepeater(found, spec.repeats, spec.base.seed) if spec.repeats > 1 else found


def scheduler(spec: SearchSpec) -> ASHAScheduler | None:
    """ASHA on the trainable's `epoch` (right across restores and retries), or none."""
    if spec.scheduler != "asha":
        return None
    return ASHAScheduler(time_attr="epoch", max_t=spec.max_epochs, grace_period=spec.grace_period,
                         reduction_factor=spec.reduction_factor)


def new_tuner(plan: Plan, trainable: Any, space: dict[str, Any], key: str) -> tune.Tuner:
    """A Tuner for a new search; `key` finds this process's Tracker from the MLflow callback."""
    spec = plan.spec
    reporter = progress.StatusTable(  # into search.log (and the console with -v)
        parameter_columns=list(space) or spec.searched,
        metric_columns=list(dict.fromkeys((*METRIC_COLUMNS, spec.metric))),
        sort_by_metric=True, max_report_frequency=10)
    return tune.Tuner(
        trainable, param_space=space,
        tune_config=tune.TuneConfig(
            metric=spec.metric, mode=spec.mode, search_alg=searcher(plan), scheduler=scheduler(spec),
            num_samples=spec.total_trials(), reuse_actors=True,
            max_concurrent_trials=None if spec.algorithm == "grid" else plan.max_concurrent),
        run_config=tune.RunConfig(
            storage_path=plan.tune_storage, name=runfolder.TUNE_DIR, verbose=1, progress_reporter=reporter,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[TrialLogger(key), progress.ProgressLine.of(spec), *guard(plan, key)]))


def guard(plan: Plan, key: str) -> list[disk_guard.DiskGuard]:
    """A DiskGuard on a local storage folder: stop before the trials running at once cannot write
    their next checkpoints (and the results, 2 MB, still fit)."""
    if is_uri(plan.storage):
        return []
    at_once = plan.max_concurrent or int((os.cpu_count() or 1) // plan.spec.cpu) or 1
    margin = preflight.disk_need(plan.spec, min(at_once, plan.spec.total_trials()))
    return [disk_guard.DiskGuard(key, local_root(plan.storage), margin)]


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


__all__ = ["run_search", "Session", "searcher", "scheduler", "param_space", "new_tuner", "start_ray",
           "start_tracking", "experiment_info", "with_data"]
