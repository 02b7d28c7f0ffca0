"""The checks of a search's plan beyond its command line's syntax, each bounded in time and each a
one-line UsageError: the Ray address answers, the tracking URI is one MLflow can use, every trial
fits in this machine's memory and its first checkpoints on the storage's disk, and a run folder to
resume holds readable files (all of them checked before the driver changes any).

Light: Ray, Optuna and pandas are imported only for --resume, inside check_resumable.
"""

from __future__ import annotations

import os
import socket
import tempfile
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search import runfolder
from search.space.schema import VALUE_KINDS
from simvp_core import memory
from simvp_core.config import ConfigError, fields_in
from simvp_core.files import read_bytes
from simvp_core.oneline import clip, printable, short_path, size

if TYPE_CHECKING:
    from search.space import SearchSpec

PROBE_TIMEOUT_S = 5.0  # a cluster's head answers a TCP connect in milliseconds
TRACKING_SCHEMES = ("http", "https", "sqlite", "file", "postgresql", "mysql", "mssql", "databricks")
RAY_PORT = 6379  # `ray start --head`'s default GCS port, what an address without a port means
# what a gRPC client sends first (HTTP/2's connection preface and an empty SETTINGS frame), and the
# type of the frame every gRPC server answers with
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
HTTP2_SETTINGS = 4
CHECKPOINT_EXTRA = 4 * 2**20  # a trial checkpoint's history, predictions and Tune's files
RESULTS_ROOM = 2 * 2**20  # results.parquet, experiment.json and Tune's state at the end
TUNER_FILE, MAX_TUNER_BYTES = "tuner.pkl", 2**28  # Tune's pickled Tuner (a few kB), read back on --resume
# the settings a trial's memory depends on (simvp_core.memory.training)
MEMORY_FIELDS = (*fields_in("model"), "batch_size", "eval_batch_size", "val_size", "test_size", "device")


class PreflightError(ValueError):
    """A check of the plan failed (one line); search.run.plan turns it into a UsageError."""


def _quoted(text: str, limit: int = 60) -> str:
    return repr(clip(printable(text), limit))


# -- where the search runs and logs --------------------------------------------------------------

def check_address(address: str | None) -> None:
    """A host:port (or ray://host:port) address must answer as a gRPC server (Ray's GCS and client
    server are) within PROBE_TIMEOUT_S: nothing listening, or something else listening, is one line
    now instead of Ray retrying for minutes. 'auto' and 'local' are Ray's to resolve (the driver
    bounds that wait)."""
    if not address or address in ("auto", "local"):
        return
    bare = address.removeprefix("ray://")
    try:
        parts = urllib.parse.urlsplit("//" + bare)
        host, port = parts.hostname, parts.port or RAY_PORT
    except ValueError as e:
        raise PreflightError(f"--address {_quoted(address)}: not host:port ({e}); pass the head's address, "
                             "e.g. 10.0.0.5:6379, or auto") from None
    if not host or parts.path or parts.query or any(c.isspace() for c in bare):
        raise PreflightError(f"--address {_quoted(address)}: not host:port; pass the head's address, e.g. "
                             "10.0.0.5:6379, or auto")
    why = "no answer"
    for candidate in _hosts(host):
        try:
            if _speaks_grpc(candidate, port):
                return
            why = "it answers, but not as a Ray cluster (no gRPC)"
            break
        except TimeoutError:
            why = "no answer"
            break
        except OSError as e:
            why = e.strerror or type(e).__name__
    raise PreflightError(f"--address {_quoted(address)}: no Ray cluster at {host}:{port} ({why}, within "
                         f"{PROBE_TIMEOUT_S:.0f} s); start it (ray start --head, or ray up) or pass its head's "
                         "address") from None


def _hosts(host: str) -> list[str]:
    """The host, and for a loopback host the address Ray puts in its place (the node's own IP, as
    ray.init finds it: the source address of a route outwards, no packet sent)."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        return [host]
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("8.8.8.8", 80))
            return [host, s.getsockname()[0]]
    except OSError:
        return [host]


def _speaks_grpc(host: str, port: int) -> bool:
    """Whether host:port answers the HTTP/2 client preface with a SETTINGS frame, as every gRPC
    server does at once (an SSH server sends its banner instead, a silent one nothing)."""
    with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S) as s:
        s.sendall(HTTP2_PREFACE)
        reply = b""
        while len(reply) < 9:
            chunk = s.recv(9 - len(reply))
            if not chunk:
                break
            reply += chunk
    return len(reply) == 9 and reply[3] == HTTP2_SETTINGS


def check_tracking_uri(uri: str) -> None:
    """A URI MLflow can use: http(s)://host[:port], sqlite:///path (its folder there or creatable),
    file:///path, a database URL, databricks. A server that does not answer is not refused here:
    the search then runs with MLflow logging off and says so once."""
    fix = "expected http(s)://host:port, sqlite:///path/mlflow.db, file:///folder or a database URL"
    if not uri or any(c.isspace() or not c.isprintable() for c in uri) or len(uri) > 2000:
        raise PreflightError(f"--tracking-uri {_quoted(uri)}: empty, too long or with spaces; {fix}")
    try:
        parts = urllib.parse.urlsplit(uri)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number in range)
    except ValueError as e:
        raise PreflightError(f"--tracking-uri {_quoted(uri)}: not a URI ({e}); {fix}") from None
    scheme = parts.scheme.split("+")[0].lower()
    if "://" not in uri and scheme != "databricks":
        return  # a local folder: MLflow's file store, made when the search starts
    if scheme not in TRACKING_SCHEMES:
        raise PreflightError(f"--tracking-uri {_quoted(uri)}: unknown scheme {_quoted(parts.scheme + '://')}; {fix}")
    if scheme in ("http", "https", "postgresql", "mysql", "mssql") and not parts.hostname:
        raise PreflightError(f"--tracking-uri {_quoted(uri)}: no host; {fix}")
    if scheme == "sqlite":
        folder = Path(uri.split(":///", 1)[-1] if ":///" in uri else "").parent
        existing = folder.absolute()
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir() or not _writable(existing):
            raise PreflightError(f"--tracking-uri {_quoted(uri)}: {short_path(existing)} is not a writable folder "
                                 f"for the database; {fix}")


def _writable(folder: Path) -> bool:
    """A real try (os.access says yes to root on read-only and special file systems such as /proc)."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".simvp-write-check-", dir=folder))
    except OSError:
        return False
    return True


# -- memory and disk -----------------------------------------------------------------------------

def trial_configs(spec: SearchSpec) -> list[Any]:
    """The configurations whose memory bounds the search's: a grid's points (one per distinct set of
    sizes), or for a sampler its listed points and the space at its largest (each numeric param at
    its top, every preset and translator it may draw); those over the space's budget never train."""
    if spec.algorithm == "grid":
        points = spec.grid_points()
    else:
        top = {p.name: _largest(p) for p in spec.space}
        models = {p.name: list(p.values) for p in spec.space
                  if p.name in ("preset", "translator") and p.kind in VALUE_KINDS}
        points = [*spec.points_to_evaluate, {k: v for k, v in top.items() if v is not None}]
        points += [{**points[-1], name: v} for name, values in models.items() for v in values]
    configs, seen = [], set()
    limits = None
    if spec.budget:  # counting imports torch: only for a space with a budget
        from search import budget

        limits = budget.of(spec)
    for point in points:
        try:
            cfg = spec.trial_config({k: v for k, v in point.items() if k in MEMORY_FIELDS})
        except (ConfigError, ValueError):
            continue  # a corner the sampler cannot draw together
        if limits is not None and limits.reason(budget.costs(cfg)):
            continue  # over budget: never trained
        sizes = tuple(getattr(cfg, k) for k in MEMORY_FIELDS)
        if sizes not in seen:
            seen.add(sizes)
            configs.append(cfg)
    return configs or [spec.base]


def _largest(param: Any) -> Any:
    """The value of a param that takes the most memory: the top of a range or of numeric values."""
    if param.kind in VALUE_KINDS:
        numbers = [v for v in param.values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return max(numbers) if numbers else None
    return int(param.high) if param.kind == "int" else param.high


def trial_memory(spec: SearchSpec) -> memory.Estimate:
    """The largest trial's memory estimate (simvp_core.memory.training)."""
    return max((memory.training(c) for c in trial_configs(spec)), key=lambda e: e.total())


def check_memory(spec: SearchSpec, at_once: int) -> str:
    """Refuse trials that do not fit in this machine's memory, `at_once` of them together (the
    embedded Ray's slots); returns the plan's line about memory."""
    estimate, gpu = trial_memory(spec), spec.gpu > 0
    fit = memory.fits(estimate, host_only=gpu)
    fix = f", or pass --max-concurrent {fit}" if 1 <= fit < at_once else ""
    try:
        memory.check(estimate, "each trial", host_only=gpu, times=at_once, fix=fix, many="trials")
    except memory.MemoryLimitError as e:
        raise PreflightError(f"{short_path(spec.path)}: {e}") from None
    room, source = memory.available()
    where = " of host memory (activations on the GPU)" if gpu else ""
    return (f"memory: {estimate.describe(host_only=gpu, parts=2)} per trial{where}, {at_once} at once; "
            f"{size(room)} {source}")


def checkpoint_bytes(spec: SearchSpec) -> int:
    """About what one trial's checkpoint takes on disk: its model and Adam's state (16 bytes a
    parameter), its history and predictions, Tune's files."""
    return int(max(16 * memory.parameters(_model(c)) for c in trial_configs(spec)) + CHECKPOINT_EXTRA)


def disk_need(spec: SearchSpec, at_once: int) -> int:
    """The free space a search needs at any moment: the next checkpoint of each trial running at
    once, and room for its results (what search.run.disk_guard keeps free while it runs)."""
    return at_once * checkpoint_bytes(spec) + RESULTS_ROOM


def check_disk(storage_root: Path, spec: SearchSpec, at_once: int) -> str:
    """Refuse a storage folder whose disk cannot take disk_need (Tune keeps a checkpoint per trial);
    returns the plan's line about disk. While the search runs, search.run.disk_guard stops it
    before the disk fills."""
    per_trial = checkpoint_bytes(spec)
    existing = Path(storage_root).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        stats = os.statvfs(existing)
    except OSError:
        return "disk: free space unknown"
    free, need = stats.f_bavail * stats.f_frsize, disk_need(spec, at_once)
    if free < need:
        raise PreflightError(f"--storage {short_path(storage_root)}: {size(free)} free on its disk, but "
                             f"{at_once} trial(s) at once need about {size(need)} for checkpoints and results; "
                             "free some space or pass another --storage")
    total = spec.total_trials() * per_trial
    return (f"disk: about {size(per_trial)} per trial checkpoint ({size(total)} for all "
            f"{spec.total_trials()}), {size(free)} free")


def _model(cfg: Any) -> Any:
    from simvp_core.presets import resolve_model_config

    return resolve_model_config(cfg.preset, **cfg.model_overrides())


# -- a run folder to resume ----------------------------------------------------------------------

def check_resumable(run_dir: Path, tune_path: str, previous: dict[str, Any], spec: SearchSpec) -> None:
    """Every file --resume reads back, read now (before the driver writes anything): the Optuna
    study, results.parquet when there is one, and Tune's experiment state."""
    from search.runfolder import results

    try:
        if spec.algorithm in runfolder.OPTUNA_ALGORITHMS:
            runfolder.read_study(run_dir, previous.get("optuna_study") or None)
        if os.path.lexists(results.path(run_dir)):
            results.read(run_dir)
    except runfolder.RunFolderError as e:
        raise PreflightError(f"--resume: {e}") from None
    try:
        from ray import cloudpickle, tune

        tune.ExperimentAnalysis(tune_path, default_metric=spec.metric, default_mode=spec.mode)
        tuner = Path(tune_path) / TUNER_FILE
        if "://" not in tune_path and tuner.exists():  # what Tuner.restore unpickles first
            cloudpickle.loads(read_bytes(tuner, MAX_TUNER_BYTES, TUNER_FILE))
    except Exception as e:  # Tune raises many kinds on a damaged experiment state
        raise PreflightError(f"--resume: Tune's state in {short_path(tune_path)} cannot be read "
                             f"({type(e).__name__}); it is corrupt: start the search anew (--name NEW)") from None


__all__ = ["PreflightError", "check_address", "check_tracking_uri", "check_memory", "check_disk", "disk_need",
           "check_resumable", "trial_configs", "trial_memory"]
