"""``python -m mlcls.cli``: the ``mlcls`` command."""

import sys

from . import main

sys.exit(main())
