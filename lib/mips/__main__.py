"""``python -m mips``: the same as the ``mips`` command."""

import sys

from mips.cli import main

sys.exit(main())
