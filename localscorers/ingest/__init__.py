"""Reading traces written by other tools: MLflow trace JSON, and OpenTelemetry spans (OTLP)."""
