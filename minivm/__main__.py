"""``python -m minivm`` works like the ``minivm`` command."""

import sys

from .cli import main

sys.exit(main())
