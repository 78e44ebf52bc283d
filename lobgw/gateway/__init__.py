"""Gateway layer (see ARCHITECTURE.md)."""
