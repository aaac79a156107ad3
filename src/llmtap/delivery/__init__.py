"""Signed deliveries from the durable outbox to endpoints outside llmtap (webhooks, PostHog)."""
