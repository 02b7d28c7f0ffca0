"""Runs a checked Plan on Ray Tune: joins or starts Ray, opens the MLflow search, builds the
searcher and scheduler (or restores them), fits the Tuner and hands Tune's trials to search.finish.

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
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch

import search
import simvp_core
from search import cluster, finish, layout, local_ray, lock, progress, resume, results, tracking, watchdog
from search.plan import Plan, UsageError, check_storage
from search.repeats import SeedRepeater, finite
from search.space import SearchSpec, optuna_space
from search.trainable import train_trial
from simvp_core import data

REPO = Path(__file__).resolve().parents[1]
METRIC_COLUMNS = ("epoch", "loss", "val_mse", "val_ssim", "test_mse")


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch that tells the study what Tune saw: each epoch's metric as an intermediate
    value at step `epoch`, and the end as COMPLETE (all the trial's epochs), PRUNED (stopped early,
    by ASHA) or FAIL (errored or diverged, with user attr `fail_reason`). Safe to resume: the study
    (optuna.db) is ahead of Tune's snapshot after a killed driver, so an epoch told again keeps
    one value per step and an outcome told again is skipped."""

    def __init__(self, *args: Any, max_epochs: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_epochs = max_epochs  # a trial's epochs unless it searches `epochs` itself
        self._steps: dict[str, set[int]] = {}  # the epochs told per trial (saved with the searcher)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        value, epoch = result.get(self.metric), result.get("epoch")
        if trial_id in self._completed_trials or epoch is None or not finite(value):
            return  # a diverged epoch's NaN is no evidence; its reason is told at the end
        steps = self._steps.setdefault(trial_id, set())
        if int(epoch) in steps:
            return  # the first value told stays
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            self._ot_trials[trial_id].report(float(value), int(epoch))
        steps.add(int(epoch))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials:
            return
        if result:  # the last result reaches the searcher only here (Tune stops on it)
            self.on_trial_result(trial_id, result)
        trial = self._ot_trials[trial_id]
        state, value, reason = self.outcome(result or {}, error, trial.params)
        try:
            if reason:
                trial.set_user_attr("fail_reason", reason)
            self._ot_study.tell(trial, value, state=state, skip_if_finished=True)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # told before the driver was killed, after Tune's last snapshot
        self._completed_trials.add(trial_id)

    def outcome(self, result: dict, error: bool, params: dict) -> tuple[Any, float | None, str]:
        """(state, value, fail_reason) of a trial that ended with `result` as its last report."""
        state = optuna.trial.TrialState
        epoch, value = int(result.get("epoch", 0)), result.get(self.metric)
        if error:
            return state.FAIL, None, "raised an error past its retries (the exception: the trial's error.txt)"
        if result.get("diverged"):
            return state.FAIL, None, str(result.get("error") or f"diverged in epoch {epoch}")
        if epoch < int(params.get("epochs", self._max_epochs)):
            return state.PRUNED, None, ""  # Optuna keeps the last intermediate value as its value
        if not finite(value):
            return state.FAIL, None, f"no finite {self.metric} at its last epoch {epoch}"
        return state.COMPLETE, float(value), ""


def run_search(plan: Plan, trainable: Callable[..., None] = train_trial) -> int:
    """Run (or resume) the search with `trainable` (search.trainable.train_trial's signature),
    then write results, sync MLflow and build the report (search.finish). Holds the run folder's
    lock (search.lock) from entering it to the end; SIGINT and SIGTERM end the search the same
    way (Tune checkpoints, what exists is written, exit 130 / 143)."""
    start = time.time()
    started_ray = start_ray(plan.address)
    # after ray.init, which sets a SIGTERM handler of its own; the watchdog ends what a SIGKILL leaves
    with Interrupts() as stop, watchdog.watch(plan.run_dir, since=start):
        held, tracker, info = None, None, None
        try:
            try:
                print(cluster.describe_cluster())
                try:  # before anything is written: a local folder cannot serve several machines
                    check_storage(plan, len(cluster.alive_nodes()))
                except UsageError as e:
                    print(f"error: {e}", file=sys.stderr)
                    return 2
                plan.run_dir.mkdir(parents=True, exist_ok=True)
                try:  # before anything is written there: one search per name
                    held = lock.acquire(plan.run_dir, takeover=plan.resume)
                except lock.LockHeld as e:
                    print(f"error: {e}", file=sys.stderr)
                    return 2
                tracker = start_tracking(plan)
                info = experiment_info(plan, tracker)
                layout.write_experiment(plan.run_dir, info)
                key = str(plan.run_dir)
                tracking.register(key, tracker)
                bound = with_data(plan, trainable)
                os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic table shows the searched params
                # one checkpoint kept per trial forces a state snapshot per epoch (what resume relies on);
                # Tune warns about that when epochs are short
                os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
                space = param_space(plan.spec)
                tuner = (resume.restore_tuner(plan, bound, space) if plan.resume
                         else new_tuner(plan, bound, space, key))
                with stop.fitting():
                    tuner.fit()
            except KeyboardInterrupt:
                stop.signal = stop.signal or signal.SIGINT
            finally:
                if started_ray:
                    ray.shutdown()
            try:
                trials = resume.tune_trials(plan)
            except Exception:
                if not stop.signal:
                    raise
                trials = None  # interrupted before Tune's first state snapshot
            if trials is None or held is None or info is None:
                return interrupted_early(plan, tracker if held is not None else None, stop.signal)
            try:
                return finish.finish(plan, trials, tracker, info, start, interrupted=stop.signal)
            except KeyboardInterrupt:  # a signal while writing: what was written stays
                sig = stop.signal or signal.SIGINT
                print(f"interrupted ({signal.Signals(sig).name}) while writing the results; "
                      "continue with --resume", file=sys.stderr)
                return 128 + sig
        finally:
            if held is not None:
                held.release()


class Interrupts:
    """SIGINT and SIGTERM, one way: while Tune fits, the first of either asks Tune to stop as
    Ctrl-C does (its SIGUSR1 handler, the one it installs next to SIGINT's: Tune then checkpoints
    the experiment and returns); outside the fit, or a second time, KeyboardInterrupt. `.signal`
    is the first one received (None: none)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal: int | None = None
        self._fitting = False
        self._saved: dict[int, Any] = {}
        self._env: str | None = None

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is not threading.main_thread():
            return self  # signal handlers can only be set from the main thread
        self._env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # SIGINT comes here first, as SIGTERM
        for sig in self.SIGNALS:
            self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        if self._saved:
            if self._env is None:
                os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
            else:
                os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._env

    @contextlib.contextmanager
    def fitting(self) -> Iterator[None]:
        """Around Tuner.fit: until Tune installs its SIGUSR1 handler, none (a stale one from an
        earlier fit in this process would stop nothing)."""
        usr1 = hasattr(signal, "SIGUSR1") and bool(self._saved)
        saved = signal.signal(signal.SIGUSR1, signal.SIG_IGN) if usr1 else None
        self._fitting = True
        try:
            yield
        finally:
            self._fitting = False
            if usr1:
                signal.signal(signal.SIGUSR1, saved)

    def _handle(self, sig: int, frame: Any) -> None:
        first = self.signal is None
        self.signal = self.signal or sig
        tune_stop = signal.getsignal(signal.SIGUSR1) if hasattr(signal, "SIGUSR1") else None
        if first and self._fitting and callable(tune_stop):
            print(f"\n{signal.Signals(sig).name} received: stopping the search after Tune's last "
                  "checkpoint (send it again to stop at once)", file=sys.stderr, flush=True)
            tune_stop(sig, frame)
            return
        raise KeyboardInterrupt


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
        ray.init(address=address, runtime_env={"py_modules": modules})
    else:
        local_ray.init()  # loopback only, token authentication as Ray sets it
    return True


def start_tracking(plan: Plan) -> tracking.Tracker:
    """The search's MLflow parent run: a new one, or the resumed search's when the store is the same."""
    spec = plan.spec
    same_store = plan.previous.get("tracking_uri") == plan.tracking_uri
    tracker = tracking.Tracker(
        plan.tracking_uri, plan.name, spec,
        parent_run_id=plan.previous.get("mlflow_parent_run_id") if same_store else None,
        artifact_location=(plan.run_dir.parent / layout.MLARTIFACTS_DIR / plan.name).as_uri()
        if plan.tracking_uri.startswith("sqlite:") else None)
    reason = tracking.probe(plan.tracking_uri)
    if reason:
        tracker.turn_off(reason)
    searched = results.searched_names(spec)
    fixed = {k: v for k, v in spec.base.to_dict().items() if k not in searched}
    tracker.start_search(spec.path, {"space_file": spec.path, "command": plan.command,
                                     "git_commit": git_commit()}, fixed)
    return tracker


def experiment_info(plan: Plan, tracker: tracking.Tracker) -> dict[str, Any]:
    """experiment.json at the start of a session; a resumed search keeps its start and wall time."""
    spec, previous = plan.spec, plan.previous
    return {
        "experiment": plan.name,
        "space": spec.path,
        "space_hash": resume.space_hash(spec),
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
        "optuna_study": plan.name if spec.algorithm in layout.OPTUNA_ALGORITHMS else None,
        "command": previous.get("command", plan.command),  # the command that started the search
        "resume_commands": previous.get("resume_commands", []) + ([plan.command] if plan.resume else []),
        "git_commit": git_commit(),
        "data_dir": plan.data_dir if plan.data_dir == data.SAMPLE else str(Path(plan.data_dir).resolve()),
        "tune_storage": plan.tune_path,
        "test_set": previous.get("test_set", ""),
        "started": previous.get("started", layout.timestamp()),
        "finished": None,
        "wall_seconds": previous.get("wall_seconds", 0.0),
        "tracking_uri": plan.tracking_uri,
        "mlflow_parent_run_id": tracker.parent_run_id,
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
    per seed and tells the study the mean."""
    spec = plan.spec
    if spec.algorithm == "grid":
        return BasicVariantGenerator(points_to_evaluate=spec.grid_points(),
                                     max_concurrent=plan.max_concurrent or 0)
    sampler = (optuna.samplers.RandomSampler(seed=spec.seed) if spec.algorithm == "random"
               else optuna.samplers.TPESampler(seed=spec.seed))
    found = ResumableOptunaSearch(optuna_space(spec), metric=spec.metric, mode=spec.mode,
                                  points_to_evaluate=[dict(p) for p in spec.points_to_evaluate] or None,
                                  sampler=sampler, study_name=plan.name,
                                  storage=optuna.storages.RDBStorage(plan.optuna_url),
                                  max_epochs=spec.max_epochs)
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
    reporter = tune.CLIReporter(
        parameter_columns=list(space) or results.searched_names(spec),
        metric_columns=list(dict.fromkeys((*METRIC_COLUMNS, spec.metric))),
        sort_by_metric=True, max_report_frequency=10)
    return tune.Tuner(
        trainable, param_space=space,
        tune_config=tune.TuneConfig(
            metric=spec.metric, mode=spec.mode, search_alg=searcher(plan), scheduler=scheduler(spec),
            num_samples=spec.total_trials(), reuse_actors=True,
            max_concurrent_trials=None if spec.algorithm == "grid" else plan.max_concurrent),
        run_config=tune.RunConfig(
            storage_path=plan.tune_storage, name=layout.TUNE_DIR, verbose=1, progress_reporter=reporter,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[tracking.TrialLogger(key), progress.ProgressLine.of(spec)]))


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


__all__ = ["run_search", "ResumableOptunaSearch", "searcher", "scheduler", "param_space",
           "new_tuner", "start_ray", "start_tracking", "experiment_info", "with_data"]
