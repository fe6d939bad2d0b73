"""``python -m crossforget COMMAND ...``: the command line, and the form torchrun starts
(``torchrun ... -m crossforget train``)."""

import sys

from crossforget.cli import main

if __name__ == "__main__":
    sys.exit(main())
