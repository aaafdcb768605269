"""The HTTP server (extra ``localscorers[server]``): OTLP ingestion and the web UI."""
