"""Hooks into process managers (uWSGI, Celery) that fork or end processes behind Python's back."""
