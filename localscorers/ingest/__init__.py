"""Reading traces written by other tools: MLflow trace JSON (and OTLP, later)."""
