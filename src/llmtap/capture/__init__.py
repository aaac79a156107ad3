"""What a captured call is made of, shared by the proxy and the ingestion endpoints.

``tap`` reads the ``Helicone-*``/``Llmtap-*`` settings, ``redaction`` removes secrets,
``bodies`` makes the (omit-aware) body references, ``decode`` inflates compressed bodies within
a cap, ``builder`` is the one place a ``LogRecord`` is assembled from those parts,
``carried`` names the ``extra`` keys an ingested record uses for the usage it carries, and
``logged_head`` reads a response head once for the many records of an answer served again.
Nothing here does I/O, and nothing here imports ``proxy``, ``ingest``, ``consumer`` or ``api``.
"""
