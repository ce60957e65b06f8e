"""Pendo's rules, pure: the rollout decision, translation of a Segment message, names and values."""
