"""The two output streams of the CLI: results to stdout, logs and errors to stderr.

Tables keep their width (140 columns) when the output is a file or pipe rather than a terminal.
"""

import sys

from rich.console import Console
from rich.markup import escape

from promolab.errors import printable

_WIDTH = None if sys.stdout.isatty() else 140
out = Console(highlight=False, soft_wrap=True, width=_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def plain(text: object) -> str:
    """User text (a path, a label) safe inside a Rich markup string: control characters escaped,
    square brackets not read as markup."""
    return escape(printable(text))
