"""Pytest fixture for users (written soon)."""
