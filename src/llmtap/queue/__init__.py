"""Queue port and adapters."""
