"""``python -m rttag`` is the ``rttag`` command."""

import sys

from .cli import main

sys.exit(main())
