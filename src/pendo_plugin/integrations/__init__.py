"""Adapters to other libraries and process managers: OpenFeature rollout, Prometheus/OpenTelemetry
counters, and hooks for uWSGI, Celery and gevent, which fork, end or patch processes behind our back."""
