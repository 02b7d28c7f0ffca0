"""`python -m search.report runs/<name>`: a search's report, the paper's tables and figures, from
its run folder alone. document builds it (tables, figures and insight are its parts)."""

from search.report.document import FIGURE_FILES, ReportError, build_report, write_index

__all__ = ["build_report", "write_index", "ReportError", "FIGURE_FILES"]
