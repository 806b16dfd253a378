"""``python -m mlcls``: the ``mlcls`` command."""

import sys

from .cli import main

sys.exit(main())
