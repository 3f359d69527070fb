"""What operators watch: Prometheus metrics, request context and structured logs."""
