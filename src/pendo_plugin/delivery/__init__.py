"""Delivery to Pendo: the worker, its HTTP transport, retry policy, adaptive concurrency and spool."""
