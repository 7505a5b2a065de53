"""promolab.analyze (see ARCHITECTURE.md)."""
