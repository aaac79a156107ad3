"""Data to look at without a provider key: synthetic calls for ``llmtap serve --demo``."""
