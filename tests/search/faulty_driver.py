"""`python tests/search/faulty_driver.py FAULTS SPACE [OPTIONS]`: search.run's main, its trainable
wrapped with the faults (tests/search/faults.py); the driver the kill test runs as a subprocess."""

import sys

from faults import parse_faults, with_faults  # this script's folder is first on sys.path

from search.run import main
from search.trainable import train_trial

if __name__ == "__main__":
    sys.exit(main(sys.argv[2:], trainable=with_faults(train_trial, parse_faults(sys.argv[1]))))
