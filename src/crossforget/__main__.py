"""``python -m crossforget``: the command line."""

import sys

from crossforget.cli import main

sys.exit(main())
