"""``python -m driftline.cli``: the ``driftline`` console script."""

import sys

from driftline.cli import main

sys.exit(main())
