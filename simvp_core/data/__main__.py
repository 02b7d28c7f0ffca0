"""`python -m simvp_core.data fetch [--data-dir DIR] [--test-set]`: simvp_core.fetch's command line,
where users look for it (beside the data it fetches)."""

import sys

from simvp_core.fetch import main

sys.exit(main())
