"""MLflow, the search's only client of it: one parent run per search, one nested child run per
trial (Tracker), the store as a whole (store), and the Tune callback that logs epochs live
(search.tracking.tune_callback, imported by the driver alone: it needs Ray).

Figures are drawn elsewhere (search.report.figures) and handed here to be logged.
"""

from search.tracking.store import (
                                   KIND_TAG,
                                   RUNS_VIEW,
                                   TRAINING_KIND,
                                   attach_report,
                                   end_killed_runs,
                                   experiment_url,
                                   probe,
                                   ui_command,
)
from search.tracking.tracker import Tracker

__all__ = ["Tracker", "probe", "ui_command", "experiment_url", "attach_report", "end_killed_runs",
           "KIND_TAG", "TRAINING_KIND", "RUNS_VIEW"]
