"""``python -m cmm_core``: see :mod:`cmm_core.cli`."""

import sys

from cmm_core.cli import main

if __name__ == "__main__":
  sys.exit(main())
