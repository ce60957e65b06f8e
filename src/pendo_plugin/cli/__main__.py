"""``python -m pendo_plugin.cli``: the same as the ``pendo-plugin`` command."""

import sys

from pendo_plugin.cli import main

sys.exit(main())
