"""The command line of `python -m search.run`, resolved into a frozen Plan and checked before
anything starts; `--dry-run` prints that same Plan, so it approves exactly what a run accepts.

Everything that can be wrong is refused here with one line (UsageError, exit code 2): the space
file, the run name, an existing run folder without --resume, a resume that does not match, the
storage, the local resources and the data. No Ray and no torch are imported at module level.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search import runfolder
from search.run import cluster, preflight
from search.runfolder import lock
from search.runfolder.checkpoints import KEEP_CHECKPOINTS, KEEP_HELP
from simvp_core.env import EnvError
from simvp_core.oneline import OneLineParser, printable, short_path

if TYPE_CHECKING:
    from search.run.warm import Source
    from search.space import SearchSpec

DESCRIPTION = ("Run a search space on Ray Tune (grid, random or Optuna; ASHA), tracked in MLflow, "
               "written to runs/<name>/ and reported in reports/<name>.md.")


class UsageError(ValueError):
    """A bad command line or run folder: reported as one line, exit code 2, before Ray starts."""


@dataclass(frozen=True)
class Plan:
    """Everything a search needs, resolved and checked before Ray starts."""

    spec: SearchSpec
    space_file: str  # as given on the command line
    name: str
    command: str  # the command line, as experiment.json records it
    run_dir: Path  # the driver's files: results.parquet, experiment.json, optuna.db, predictions/
    storage: str  # --storage: a folder or a URI
    shared_storage: bool  # --storage is mounted at the same path on every node
    tune_storage: str  # RunConfig.storage_path: run_dir, or <URI>/<name> for remote storage
    tracking_uri: str
    address: str | None  # the Ray cluster to join (--address, else $RAY_ADDRESS); None: embedded
    max_concurrent: int | None
    reports_dir: Path
    resume: bool
    previous: Mapping[str, Any]  # experiment.json of the search being resumed; {} otherwise
    data_dir: str | None  # the MNIST folder (fetched if missing) or "sample"; None in a dry run
    dry_run: bool
    warm: tuple[Source, ...] = ()  # earlier searches seeding a new study (none on --resume)
    verbose: bool = False  # -v: the libraries' logs and the trials' output on the console too
    checked: tuple[str, ...] = ()  # what the memory and disk checks found, in words (the dry run says it)

    @property
    def tune_path(self) -> str:
        """Tune's experiment folder (checkpoints and the state --resume restores)."""
        return runfolder.tune_path(self.tune_storage)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m search.run", description=DESCRIPTION)
    p.add_argument("space", help="a space file, e.g. spaces/smoke.yaml")
    p.add_argument("--smoke", action="store_true", help="the space scaled to CPU minutes (<= 4 trials)")
    p.add_argument("--dry-run", action="store_true",
                   help="check everything a run checks, print the plan and exit; starts nothing")
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
    p.add_argument("--warm-start", action="append", default=[], metavar="RUN",
                   help="an earlier search (runs/<name>, or a name in --storage) whose completed trials "
                        "seed the study, besides the space's warm_start; repeatable (algorithm optuna)")
    p.add_argument("--keep-checkpoints", choices=tuple(KEEP_CHECKPOINTS),
                   help=f"{KEEP_HELP} (default: the space's keep_checkpoints, else best)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also show Ray's, Tune's (its status table), MLflow's and Optuna's logs and what the "
                        "trials print here; they always go to runs/<name>/search.log")
    return p


def make_plan(argv: list[str]) -> Plan:
    """Parse the command line and check it against the file system and this machine; raises
    UsageError. Starts nothing; only a real run (not --dry-run) fetches missing MNIST."""
    args = build_parser().parse_args(argv)
    spec = load_spec(args.space, args.smoke)
    if args.keep_checkpoints:
        spec = replace(spec, keep_checkpoints=args.keep_checkpoints)
    name = check_name(spec.experiment if args.name is None else args.name)  # smoke: <experiment>-smoke
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise UsageError(f"--max-concurrent {args.max_concurrent}: expected an integer >= 1")
    check_storage_path(args.storage)
    check_reports_dir(args.reports_dir, name)
    run_dir = local_root(args.storage) / name
    try:  # a look at who holds the folder; the driver takes the lock itself, atomically
        lock.check(run_dir, takeover=True)  # a stale lock: --resume takes it over, else refused below
    except lock.LockHeld as e:
        raise UsageError(str(e)) from e
    tune_storage = f"{args.storage.rstrip('/')}/{name}" if is_uri(args.storage) else str(run_dir)
    warm = warm_start(spec, args.warm_start, run_dir, args.resume)
    previous = _previous(args.resume, run_dir, runfolder.tune_path(tune_storage), spec, args.space)
    plan = Plan(
        spec=spec, space_file=args.space, name=name,
        command=shlex.join(["python", "-m", "search.run", *argv]), run_dir=run_dir,
        storage=args.storage, shared_storage=args.shared_storage, tune_storage=tune_storage,
        tracking_uri=(args.tracking_uri or previous.get("tracking_uri")
                      or default_tracking_uri(args.storage)),
        address=args.address or os.environ.get("RAY_ADDRESS") or None,
        max_concurrent=args.max_concurrent, reports_dir=args.reports_dir, resume=args.resume,
        previous=previous, data_dir=None, dry_run=args.dry_run, warm=warm, verbose=args.verbose)
    try:
        if args.tracking_uri:
            preflight.check_tracking_uri(args.tracking_uri)
        preflight.check_address(plan.address)
        if plan.address is None:  # an embedded Ray: one node with this machine's CPUs and GPUs
            check_storage(plan, n_nodes=1)
            check_local_resources(spec)
            at_once = min(local_slots(plan), spec.total_trials())
            plan = replace(plan, checked=(preflight.check_memory(spec, at_once),
                                          preflight.check_disk(local_root(args.storage), spec, at_once)))
    except preflight.PreflightError as e:
        raise UsageError(str(e)) from e
    if plan.dry_run:
        return plan
    return replace(plan, data_dir=fetch_data(args.data_dir, spec.sample_fallback))


def load_spec(space_file: str, smoke: bool) -> SearchSpec:
    """The validated space (scaled down with --smoke), a grid's configurations over its budget set
    aside (counting them imports torch: only for a space with a budget); a bad file is a UsageError."""
    from search.space import SpaceError, load_space, scale_to_smoke

    try:
        spec = load_space(space_file)
        spec = scale_to_smoke(spec) if smoke else spec
    except (SpaceError, EnvError) as e:  # EnvError: a wrong $SIMVP_MAX_TRIALS
        raise UsageError(str(e)) from e
    if not spec.budget:
        return spec
    from search import budget

    try:
        return budget.filter_grid(spec)
    except budget.BudgetError as e:
        raise UsageError(str(e)) from e


def warm_start(spec: SearchSpec, extra: list[str], run_dir: Path, resuming: bool) -> tuple[Source, ...]:
    """The earlier searches seeding a new study: the space's warm_start and --warm-start, read and
    matched now; none on --resume (the study was seeded when the search started)."""
    if extra and spec.algorithm != "optuna":
        raise UsageError(f"--warm-start: algorithm {spec.algorithm} learns nothing from earlier trials; "
                         "warm start a search with algorithm optuna (TPE)")
    if extra and resuming:
        raise UsageError("--warm-start with --resume: the study was seeded when the search started; "
                         "drop --warm-start")
    names = list(dict.fromkeys([*spec.warm_start, *extra]))
    if resuming or not names:
        return ()
    from search.run import warm

    try:
        return warm.select(spec, names, run_dir)
    except warm.WarmStartError as e:
        raise UsageError(str(e)) from e


def _previous(resuming: bool, run_dir: Path, tune_path: str, spec: SearchSpec,
              space_file: str) -> dict[str, Any]:
    """experiment.json of the search --resume continues; without --resume, the run folder must
    be new or empty."""
    if not resuming:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise UsageError(f"{short_path(run_dir)} already holds a search named {_cut(run_dir.name)}; "
                             "pass --resume to continue it, or --name NEW to start another")
        return {}
    from ray import tune  # Tune's own check of its state: the one import of Ray a plan makes

    if not (run_dir / runfolder.EXPERIMENT_FILE).is_file() or not tune.Tuner.can_restore(tune_path):
        raise UsageError(f"--resume: nothing to resume at {short_path(run_dir)} (no experiment.json or "
                         f"no Tune state in {short_path(tune_path)}); run without --resume to start the "
                         "search")
    try:
        previous = runfolder.read_experiment(run_dir)
    except runfolder.RunFolderError as e:
        raise UsageError(f"--resume: {e}") from e
    if previous.get("space_hash") not in (None, spec.fingerprint()):
        raise UsageError(f"--resume: {short_path(space_file)} no longer says what {short_path(run_dir)} "
                         "was started with (space file or --smoke changed); restore it, or start a new --name")
    try:  # every file the driver will read back, before it writes anything
        preflight.check_resumable(run_dir, tune_path, previous, spec)
    except preflight.PreflightError as e:
        raise UsageError(str(e)) from e
    return previous


# what the platform keeps beside the run folders in the storage folder: no run may be named so
STORAGE_LEVEL_NAMES = (runfolder.MLFLOW_DB, *(f"{runfolder.MLFLOW_DB}{s}" for s in ("-journal", "-wal", "-shm")),
                       runfolder.MLARTIFACTS_DIR)
# the URI schemes Ray Tune's storage (pyarrow.fs) can write to
STORAGE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]+")  # as a space file's `experiment` (search.space.schema)
MAX_NAME_CHARS = 100


def _cut(text: str, limit: int = 60) -> str:
    """repr(text), its end cut off past `limit` characters: a refusal quoting what was typed stays short."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def check_name(name: str) -> str:
    """The run name, as both a real run and --dry-run check it: a plain folder name (letters,
    digits, '_', '.', '-'; not '.' or '..'; at most MAX_NAME_CHARS, so <name>.md and the files
    beside it stay under the 255 bytes a file name may have) that is not one of the storage
    folder's own files."""
    if len(name) > MAX_NAME_CHARS:
        raise UsageError(f"--name {_cut(name)} ({len(name):,} characters): expected at most {MAX_NAME_CHARS} "
                         "characters (it names runs/<name>/ and reports/<name>.md); choose a shorter --name")
    if not _PLAIN_NAME.fullmatch(name) or name in (".", ".."):
        raise UsageError(f"--name {_cut(name)}: expected a plain folder name (letters, digits, '_', '.', "
                         "'-'; no path separators, not '.' or '..'), e.g. --name my-search")
    if name.casefold() in (n.casefold() for n in STORAGE_LEVEL_NAMES):
        raise UsageError(f"--name {name!r}: the storage folder keeps its own {name} beside the run "
                         f"folders (reserved: {', '.join(STORAGE_LEVEL_NAMES)}); choose another --name")
    return name


def check_storage_path(storage: str) -> None:
    """--storage: a supported URI, or a folder that is (or can be made) writable here."""
    if is_uri(storage):
        scheme = storage.split("://", 1)[0].lower()
        if scheme not in STORAGE_SCHEMES:
            raise UsageError(f"--storage {short_path(storage)}: unsupported URI scheme "
                             f"{_cut(scheme + '://')}; expected a local folder or one of "
                             f"{', '.join(s + '://' for s in STORAGE_SCHEMES)}")
        return
    _check_writable_folder("--storage", Path(storage))


def check_reports_dir(reports_dir: Path, name: str) -> None:
    """--reports-dir must take <name>.md and <name>/, checked now, not after the search ran."""
    _check_writable_folder("--reports-dir", reports_dir)
    md, figures = reports_dir / f"{name}.md", reports_dir / name
    if md.is_dir():
        raise UsageError(f"--reports-dir {short_path(reports_dir)}: {short_path(md)} is a folder, where "
                         "the report goes; move it away or choose another --reports-dir")
    if figures.exists() and not figures.is_dir():
        raise UsageError(f"--reports-dir {short_path(reports_dir)}: {short_path(figures)} is a file, "
                         "where the report's figures go; move it away or choose another --reports-dir")


def _check_writable_folder(flag: str, folder: Path) -> None:
    """folder is a writable folder, or the nearest existing folder above it is (it is made later)."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{flag} {short_path(folder)}: an existing file, not a folder; pass a folder")
    existing = folder.absolute()
    while not existing.exists():  # the part of the path that is already there
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{flag} {short_path(folder)}: {short_path(existing)} is a file, so no folder "
                         "can be made under it; pass a folder")
    try:  # a real try, not os.access: root passes that on read-only and special file systems (/proc)
        os.rmdir(tempfile.mkdtemp(prefix=".simvp-write-check-", dir=existing))
    except OSError as e:
        raise UsageError(f"{flag} {short_path(folder)}: {short_path(existing)} is not writable "
                         f"({e.strerror}); pass a writable folder or fix its permissions") from e


def is_uri(storage: str) -> bool:
    return "://" in storage


def local_root(storage: str) -> Path:
    """Where the driver keeps its files: the storage folder, or ./runs for remote storage."""
    return Path("runs" if is_uri(storage) else storage).resolve()


def default_tracking_uri(storage: str) -> str:
    """The default MLflow store: an SQLite file beside the run folders."""
    return runfolder.default_tracking_uri(local_root(storage))


def check_storage(plan: Plan, n_nodes: int) -> None:
    """The storage must be reachable from every one of the Ray cluster's n_nodes live nodes."""
    try:
        cluster.check_storage(plan.storage, plan.shared_storage, n_nodes)
    except ValueError as e:
        raise UsageError(str(e)) from e


def check_local_resources(spec: SearchSpec) -> None:
    """An embedded Ray has this machine's CPUs and GPUs; a trial asking for more never starts."""
    cpus = os.cpu_count() or 1
    if spec.cpu > cpus:
        raise UsageError(f"{short_path(spec.path)}: resources.cpu is {spec.cpu:g} per trial but this "
                         f"machine has {cpus} CPUs; use --smoke (1 CPU per trial) or join a cluster with --address")
    if spec.gpu > 0 and spec.gpu > (gpus := local_gpus()):
        raise UsageError(f"{short_path(spec.path)}: resources.gpu is {spec.gpu:g} per trial but this "
                         f"machine has {gpus} GPUs; use --smoke (CPU only) or join a cluster with --address")


def local_gpus() -> int:
    """The GPUs an embedded Ray gets here, counted as Ray counts them (the NVIDIA driver's devices,
    at most as many as $CUDA_VISIBLE_DEVICES lists) without importing torch: `nvidia-smi -L`."""
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):  # no NVIDIA driver here
        return 0
    found = sum(line.startswith("GPU ") for line in out.stdout.splitlines()) if out.returncode == 0 else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return found
    return min(found, 0 if visible in ("", "NoDevFiles") else len(visible.split(",")))


def fetch_data(data_dir: str | None, allow_sample: bool) -> str:
    """The MNIST folder (simvp_core.data.resolve_data_dir), fetched there when missing; if that
    fails, the bundled sample when the space allows it (sample_fallback), else a UsageError."""
    from simvp_core.fetch import ensure_mnist

    try:
        return ensure_mnist(data_dir, allow_sample)
    except (OSError, ValueError) as e:  # no data and no fetch, an unwritable folder, a wrong file
        raise UsageError(str(e)) from e


def dry_run(plan: Plan) -> str:
    """The checked plan in words: the space, how trials are chosen, where they run, where the
    search writes."""
    from search.space import explain

    spec = plan.spec
    sampler = {"optuna": f"TPE, seed {spec.seed}", "random": f"random sampler, seed {spec.seed}"}
    algorithm = (f"OptunaSearch ({sampler[spec.algorithm]}), study {plan.name} in "
                 f"{plan.run_dir / runfolder.OPTUNA_DB}" if spec.algorithm in sampler
                 else "BasicVariantGenerator over the grid points")
    lines = [f"search algorithm: {algorithm}", f"resources: {_where(plan)}",
             f"run folder: {plan.run_dir}" + (f" (Tune state in {plan.tune_path})"
                                              if is_uri(plan.storage) else ""),
             f"tracking: {plan.tracking_uri}", *plan.checked]
    if plan.warm:
        from search.run import warm

        lines += warm.describe(plan.warm)
    if plan.resume:
        lines.append(f"resume: the search started {plan.previous.get('started', '?')} "
                     f"with {plan.previous.get('command', '?')}")
    lines.append("dry run: nothing started")
    return "\n".join([explain(spec), *map(printable, lines)])  # explain escapes what it quotes itself


def local_slots(plan: Plan) -> int:
    """Trials an embedded Ray runs at once: its CPUs (and GPUs) over a trial's, at most --max-concurrent."""
    spec = plan.spec
    slots = int((os.cpu_count() or 1) // spec.cpu)
    if spec.gpu > 0:
        slots = min(slots, int(local_gpus() // spec.gpu))
    return max(1, min(slots, plan.max_concurrent or slots))


def _where(plan: Plan) -> str:
    """Where the trials run and how many at once."""
    spec, limit = plan.spec, f"; --max-concurrent {plan.max_concurrent}" if plan.max_concurrent else ""
    if plan.address:
        return (f"Ray cluster at {plan.address} (its nodes and their storage are checked when the "
                f"search joins it){limit}")
    cpus = os.cpu_count() or 1
    slots = int(cpus // spec.cpu)
    gpus = ""
    if spec.gpu > 0:
        n = local_gpus()
        slots, gpus = min(slots, int(n // spec.gpu)), f" and {n} GPUs"
    return f"embedded local Ray with {cpus} CPUs{gpus}: up to {slots} trial(s) at once{limit}"


__all__ = ["Plan", "UsageError", "make_plan", "dry_run", "build_parser", "load_spec",
           "check_storage", "check_local_resources", "check_name", "check_storage_path",
           "check_reports_dir", "local_gpus", "fetch_data",
           "default_tracking_uri", "local_root", "is_uri"]
