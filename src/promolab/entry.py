"""The ``promolab`` executable: ``--version`` answers before the command line (typer, rich, the spec
models) is built, so scripts that check it pay only Python's start-up."""

from __future__ import annotations

import sys


def main() -> None:
    """Run the command line (:func:`promolab.cli.main`); print the version alone for ``--version``."""
    if sys.argv[1:] == ["--version"]:
        from promolab import __version__

        sys.stdout.write(f"promolab {__version__}\n")
        return
    from promolab.cli import main as command_line

    command_line()
