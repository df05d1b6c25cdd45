"""``python -m regdecoder``: the ``regdecoder`` command line (see :mod:`regdecoder.cli`)."""

import sys

from .cli import main

sys.exit(main())
