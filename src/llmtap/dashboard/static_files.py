"""The dashboard's static files, read into memory once at start and served from there.

Only files that exist under ``static/`` when the process starts can be named (a dictionary
look-up: no path is ever joined from the request). Every URL the pages use carries the file's
content hash (``?v=``), and vendored files live in versioned directories, so all of them are
cached for a year and never revalidated. The pages load two bundles made at start
(``BUNDLES``: the vendored libraries and ours, concatenated), so a page is three requests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

STATIC_DIR = Path(__file__).resolve().parent / "static"
PREFIX = "/static/"
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}
CACHE_FOREVER = "public, max-age=31536000, immutable"
BUNDLES = {
    "dashboard.js": (
        "vendor/htmx-2.0.11/htmx.min.js",
        "vendor/uplot-1.6.32/uPlot.iife.min.js",
        "app.js",
    ),
    "dashboard.css": ("vendor/uplot-1.6.32/uPlot.min.css", "app.css"),
}


@dataclass(frozen=True, slots=True)
class Asset:
    data: bytes
    content_type: str
    version: str


class StaticFiles:
    def __init__(self, root: Path = STATIC_DIR) -> None:
        self._assets: dict[str, Asset] = {}
        for path in sorted(root.rglob("*")):
            content_type = _TYPES.get(path.suffix)
            if not path.is_file() or content_type is None:
                continue
            data = path.read_bytes()
            name = path.relative_to(root).as_posix()
            self._assets[name] = Asset(data, content_type, hashlib.sha256(data).hexdigest()[:12])
        # LICENSE files have no suffix: served as text beside their library
        for path in sorted(root.rglob("LICENSE*")) + sorted(root.rglob("NOTICE")):
            name = path.relative_to(root).as_posix()
            if path.is_file() and name not in self._assets:
                data = path.read_bytes()
                version = hashlib.sha256(data).hexdigest()[:12]
                self._assets[name] = Asset(data, _TYPES[".txt"], version)
        if root == STATIC_DIR:
            for name, parts in BUNDLES.items():
                self.bundle(name, parts)

    def bundle(self, name: str, parts: tuple[str, ...]) -> None:
        """A file ``name`` made of ``parts`` one after the other (kept in memory): a page loads
        one script and one stylesheet instead of one per library."""
        first = self._assets[parts[0]]
        separator = b"\n;\n" if first.content_type.startswith("text/javascript") else b"\n"
        data = separator.join(self._assets[part].data for part in parts)
        version = hashlib.sha256(data).hexdigest()[:12]
        self._assets[name] = Asset(data, first.content_type, version)

    def url(self, name: str) -> str:
        """The URL of a static file, with its content hash; ``KeyError`` for an unknown one."""
        return f"{PREFIX}{name}?v={self._assets[name].version}"

    def response(self, request: Request) -> Response:
        name = request.path_params["name"]
        asset = self._assets.get(name)
        if asset is None:
            return Response("not found", status_code=404, media_type="text/plain")
        headers = {"Cache-Control": CACHE_FOREVER, "ETag": f'"{asset.version}"'}
        if request.headers.get("if-none-match") == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        return Response(asset.data, media_type=asset.content_type, headers=headers)
