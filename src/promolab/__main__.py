"""``python -m promolab`` runs the command line."""

from promolab.cli import main

main()
