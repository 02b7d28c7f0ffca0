"""A search's console: our lines only (the start summary, one live progress line, a line per
trial's end, the closing summary). Ray's, Tune's, MLflow's and Optuna's logs, Python warnings and
what the trials print go to search.log in the run folder (search.runfolder.open_log); -v shows
them here too. A library warning that matters to the user is said once, in our words (NOTABLE).

Until the driver holds the run folder (a refused search writes nothing there), what is logged
waits in memory; a search that crashes before then shows it on stderr.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import shutil
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from search import runfolder, tracking

if TYPE_CHECKING:
    from search.run.plan import Plan

FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
logging.getLogger("search.console").setLevel(logging.INFO)
TUNE_TABLE = logging.getLogger("search.console.tune")  # Tune's status table (search.run.progress)
WORKERS = logging.getLogger("search.console.workers")  # the trials' stdout and stderr, via Ray
RAY_PRINT = "ray_print_logs"  # Ray's handler printing the workers' output on the driver's console
# library warnings worth a line of ours: (logger name prefix, what we say; {log}: search.log's path)
NOTABLE = (
    ("ray.tune.execution.insufficient_resources_manager",
     "warning: no trial could start for a minute: none fits the free CPUs and GPUs of the Ray cluster "
     "(resources per trial in the space file); add nodes or ask for less (Tune's words in {log})"),
)
CLEAR = "\r\033[K"  # back to the start of the terminal's line, and erase it

_current: Console | None = None


def live() -> bool:
    """Whether the progress line is redrawn in place (stdout is a terminal, without -v)."""
    return _current is not None and _current.live


def say(line: str) -> None:
    """A line of ours that stays (above the live progress line on a terminal)."""
    if _current is None:
        print(line, flush=True)
    else:
        _current.say(line)


def show(line: str) -> None:
    """The progress line: redrawn in place on a terminal, else printed as a line."""
    if _current is None:
        print(line, flush=True)
    else:
        _current.show(line)


def library_text(text: str) -> None:
    """Text a library prints rather than logs (Tune's status table): to search.log; -v: here too."""
    TUNE_TABLE.info(text)
    if _current is None or _current.verbose:
        print(text, flush=True)


class Console:
    """For the length of a search: library logs and the trials' output routed (`route_workers`
    once Ray is connected, `attach` once the run folder is held), our lines shown."""

    def __init__(self, verbose: bool = False) -> None:
        self.verbose, self.live = verbose, False
        self.log: Path | None = None
        self._pending = logging.handlers.MemoryHandler(capacity=1, flushLevel=logging.CRITICAL + 1)
        self._notable = _Notable(self)
        self._added: list[tuple[logging.Logger, logging.Handler]] = []
        self._removed: list[tuple[logging.Logger, logging.Handler]] = []
        self._saved: dict[str, Any] = {}
        self._file: IO[str] | None = None
        self._ray_print: tuple[str, Any] | None = None
        self._shown = False

    def __enter__(self) -> Console:
        global _current
        self._out = sys.stdout
        self.live = not self.verbose and self._out.isatty()
        self._route_logging()
        self._route_mlflow()
        if not self.verbose:
            logging.captureWarnings(True)
        if self.live:
            sys.stdout = _AboveLine(self)
        _current = self
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        global _current
        _current = None
        if self._shown:  # the progress line stays, as the last word
            self._out.write("\n")
        sys.stdout = self._out
        if not self.verbose:
            logging.captureWarnings(False)
        logging.getLogger("mlflow").setLevel(self._saved["mlflow_level"])
        _restore_env("MLFLOW_CONFIGURE_LOGGING", self._saved["env"])
        self._restore_workers()
        for logger, handler in self._added:
            logger.removeHandler(handler)
        for logger, handler in self._removed:
            logger.addHandler(handler)
        if self._file is None and exc_type is not None and issubclass(exc_type, Exception) and not self.verbose:
            for record in self._pending.buffer:  # a crash before the run folder: what led to it
                print(FORMAT.format(record), file=sys.stderr)
        self._pending.close()
        if self._file is not None:
            self._file.close()

    def _route_logging(self) -> None:
        """Every logger printing to the console loses that handler (unless -v) and, if it does not
        pass its records up, gets ours; the root logger gets ours for the rest."""
        root = logging.getLogger()
        if self.verbose and not root.handlers:
            self._add(root, logging.lastResort)  # what Python prints when nothing is configured
        self._add(root, self._pending)
        if not self.verbose:
            self._add(root, self._notable)
        loggers = [lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
        for logger in loggers:
            printing = [h for h in logger.handlers
                        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
            if not printing:
                continue
            if not self.verbose:
                for handler in printing:
                    logger.removeHandler(handler)
                    self._removed.append((logger, handler))
            if not logger.propagate:
                self._add(logger, self._pending)
                if not self.verbose:
                    self._add(logger, self._notable)

    def _route_mlflow(self) -> None:
        """MLflow sets up its logging as it is imported, during the search: not if its own switch
        says so; then its records reach ours (and, with -v, the console)."""
        self._saved["env"] = os.environ.get("MLFLOW_CONFIGURE_LOGGING")
        os.environ["MLFLOW_CONFIGURE_LOGGING"] = "false"
        mlflow = logging.getLogger("mlflow")
        self._saved["mlflow_level"] = mlflow.level
        mlflow.setLevel(logging.INFO)
        if self.verbose and not mlflow.handlers:
            shown = logging.StreamHandler(sys.stderr)
            shown.setFormatter(FORMAT)
            self._add(mlflow, shown)

    def _add(self, logger: logging.Logger, handler: logging.Handler) -> None:
        logger.addHandler(handler)
        self._added.append((logger, handler))

    def route_workers(self) -> None:
        """What the trials print, which Ray forwards to this driver: to search.log (-v: here too)."""
        from ray._private import ray_logging  # Ray's dispatcher of the workers' stdout and stderr

        dispatcher = ray_logging.global_worker_stdstream_dispatcher
        if not self.verbose:
            self._ray_print = next((h for h in dispatcher.handlers if h[0] == RAY_PRINT), None)
            dispatcher.remove_handler(RAY_PRINT)
        dispatcher.add_handler("simvp_search_log", _worker_lines)

    def _restore_workers(self) -> None:
        import ray
        from ray._private import ray_logging

        dispatcher = ray_logging.global_worker_stdstream_dispatcher
        dispatcher.remove_handler("simvp_search_log")
        if self._ray_print is not None and ray.is_initialized():  # a Ray this search did not start
            dispatcher.add_handler(*self._ray_print)

    def attach(self, run_dir: Path, header: str) -> None:
        """From now on into run_dir's search.log (appended to, after `header`), what waited first."""
        self.log = runfolder.log_path(run_dir)
        self._file = runfolder.open_log(run_dir)
        self._file.write(f"\n== {header} ==\n")
        target = logging.StreamHandler(self._file)
        target.setFormatter(FORMAT)
        self._pending.setTarget(target)
        self._pending.flush()

    def say(self, line: str) -> None:
        self._clear()
        self._out.write(line + "\n")
        self._out.flush()

    def show(self, line: str) -> None:
        if not self.live:
            return self.say(line)
        width = shutil.get_terminal_size().columns - 1
        self._out.write(CLEAR + (line if len(line) <= width else line[:width - 3] + "..."))
        self._out.flush()
        self._shown = True

    def _clear(self) -> None:
        if self._shown:
            self._out.write(CLEAR)
            self._shown = False


class _AboveLine:
    """sys.stdout while the progress line is on the terminal: whatever else prints erases it first."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def write(self, text: str) -> int:
        self._console._clear()
        return self._console._out.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._console._out, name)


class _Notable(logging.Handler):
    """Says each NOTABLE warning once, in our words, when its logger warns."""

    def __init__(self, console: Console) -> None:
        super().__init__(logging.WARNING)
        self._console, self._said = console, set()

    def emit(self, record: logging.LogRecord) -> None:
        for prefix, words in NOTABLE:
            if record.name.startswith(prefix) and prefix not in self._said:
                self._said.add(prefix)
                self._console.say(words.format(log=self._console.log or runfolder.LOG_FILE))


def _worker_lines(data: dict[str, Any]) -> None:
    """One batch of a worker's output lines, as Ray forwards them, into search.log; of the
    autoscaler's, its events alone, as Ray's own console shows them."""
    from ray._private.worker import filter_autoscaler_events

    who = data.get("actor_name") or data.get("task_name") or "worker"
    lines = data.get("lines", [])
    for line in filter_autoscaler_events(lines) if data.get("pid") == "autoscaler" else lines:
        WORKERS.info("(%s pid=%s%s) %s", who, data.get("pid"), " stderr" if data.get("is_err") else "", line)


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def start_summary(plan: Plan, nodes: list[dict[str, Any]], cluster_line: str, tracker: tracking.Tracker,
                  log: Path) -> str:
    """What the search is about to do, where it runs and where everything goes, in a few lines."""
    spec = plan.spec
    by = (f"{spec.algorithm} over {', '.join(spec.searched)}" if spec.algorithm != "grid"
          else f"a grid over {', '.join(spec.searched)}")
    asha = (f", ASHA (grace period {spec.grace_period}, reduction factor {spec.reduction_factor})"
            if spec.scheduler == "asha" else "")
    lines = [f"search {plan.name}: {spec.path}: {by}; {spec.total_trials()} trials, at most "
             f"{spec.worst_case_epochs()} trial-epochs{asha}; picks by {spec.metric} ({spec.mode})"]
    if plan.resume:
        lines.append(f"resuming the search started {plan.previous.get('started', '?')}: finished trials are kept")
    lines.append(f"{cluster_line}; each trial {spec.cpu:g} CPU, {spec.gpu:g} GPU: at most "
                 f"{_slots(plan, nodes)} at once")
    shown = "shown here too (-v)" if plan.verbose else "-v shows them here"
    lines.append(f"run folder: {plan.run_dir}; Ray's, Tune's, MLflow's and Optuna's logs and the trials' "
                 f"output: {log} ({shown})")
    mlflow = f"{plan.tracking_uri}, experiment {plan.name}" if tracker.enabled else f"off ({tracker.off_reason})"
    lines.append(f"MLflow: {mlflow}; report: {plan.reports_dir / (plan.name + '.md')}")
    lines.append(f"from another shell: python -m search.status {plan.run_dir}")
    return "\n".join(lines)


def _slots(plan: Plan, nodes: list[dict[str, Any]]) -> int:
    """How many trials fit at once: per node, by CPUs and GPUs; then --max-concurrent and the plan."""
    spec = plan.spec
    fits = 0
    for node in nodes:
        have = node.get("Resources", {})
        n = int(have.get("CPU", 0) // spec.cpu)
        fits += min(n, int(have.get("GPU", 0) // spec.gpu)) if spec.gpu else n
    return min(fits, plan.max_concurrent or fits, spec.total_trials())


__all__ = ["Console", "live", "say", "show", "library_text", "start_summary", "NOTABLE"]
