"""Alert rules evaluated over the metrics, delivered through the outbox when they fire and resolve."""
