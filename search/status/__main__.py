import sys

from search.status.cli import main

sys.exit(main())
