import sys

from search.report.cli import main

sys.exit(main())
