"""promolab.design (see ARCHITECTURE.md)."""
