"""promolab.report (see ARCHITECTURE.md)."""
