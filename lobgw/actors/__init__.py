"""Actors layer (see ARCHITECTURE.md)."""
