"""The two output streams of the CLI: results to stdout, logs and errors to stderr.

Tables keep their width (140 columns) when the output is a file or pipe rather than a terminal.
"""

import sys

from rich.console import Console

_WIDTH = None if sys.stdout.isatty() else 140
out = Console(highlight=False, soft_wrap=True, width=_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True)
