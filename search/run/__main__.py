import sys

from search.run.cli import main

sys.exit(main())
