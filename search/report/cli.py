"""`python -m search.report runs/<name>`: the paper's tables and figures from one search's results,
in reports/<name>.md; a run folder that cannot be reported on is one line on stderr, exit 2."""

from __future__ import annotations

from pathlib import Path

from search.report.document import ReportError, build_report
from simvp_core.oneline import OneLineParser, print_error


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m search.report", description=__doc__.splitlines()[0])
    parser.add_argument("run", help="runs/<name>, or just the experiment name (looked up in --runs-dir)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--reports-dir", type=Path, default=Path("reports"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run_dir = Path(args.run)
    if not run_dir.is_dir() and (args.runs_dir / args.run).is_dir():
        run_dir = args.runs_dir / args.run
    try:
        print(build_report(run_dir, args.reports_dir))
    except ReportError as e:
        print_error(e)
        return 2
    return 0


__all__ = ["main", "build_parser"]
