"""Data to look at: realistic synthetic calls (``synthetic``), written in bulk (``llmtap seed``) or
sent through the proxy as a steady trickle (``traffic``, ``llmtap serve --demo``)."""
