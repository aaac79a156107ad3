"""What a captured call is made of, shared by the proxy and the ingestion endpoints.

``tap`` reads the ``Helicone-*``/``Llmtap-*`` settings, ``redaction`` removes secrets,
``bodies`` makes the (omit-aware) body references, ``decode`` inflates compressed bodies within
a cap, ``builder`` is the one place a ``LogRecord`` is assembled from those parts, and
``carried`` names the ``extra`` keys an ingested record uses for the usage it carries. Nothing
here does I/O, and nothing here imports ``proxy``, ``ingest``, ``consumer`` or ``api``.
"""
