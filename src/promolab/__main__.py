"""``python -m promolab`` runs the command line."""

from promolab.entry import main

main()
