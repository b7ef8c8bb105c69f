"""Logs and metrics: JSON logs, the scrubber that keeps numbers out of every log line, Prometheus metrics."""
