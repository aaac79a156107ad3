"""Body store port and adapters."""
