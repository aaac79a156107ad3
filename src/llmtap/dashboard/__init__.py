"""The dashboard: server-rendered pages over the API's own services, at ``/``.

``mount.install_dashboard`` adds its routes to the API application; one module per page
(``overview.py``, ``requests.py``, ``request_view.py``), ``auth.py`` for sign-in, sessions and
CSRF, ``templates/`` (Jinja2, autoescaped), ``static/`` (our CSS/JS and vendored libraries).
Design: docs/decisions/2026-12-01-dashboard.md.
"""
