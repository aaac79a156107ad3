"""Data to look at: realistic synthetic calls (``synthetic``), written in bulk (``seed``) or sent through the proxy (``traffic``)."""
