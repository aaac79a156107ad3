"""Logging without the proxy: calls reported after the fact become ``LogRecord``s.

Two ways in, one way out. Helicone-style async logs (``helicone.py``) and OpenTelemetry GenAI
spans (``otlp_decode.py`` + ``otlp_genai.py``) are mapped to records plus the bodies to store,
with no I/O; ``publisher.IngestPublisher`` writes the bodies and publishes the records to the
same queue the proxy uses, so the consumer, the stores and the API treat them like proxied calls.
"""
