"""Optional adapters to other libraries: OpenFeature rollout, Prometheus/OpenTelemetry counters."""
