"""Names and ids as one URL path segment, for the clients' requests and the UI's links."""

from __future__ import annotations

from urllib.parse import quote


def path_segment(value: str) -> str:
    """``value`` with every reserved character escaped ("/" too), and "." or ".." as "%2E":
    URL parsers (httpx, browsers) resolve those as the folder itself or its parent before the
    request goes out, so asset ".." was asked for as the list of assets."""
    quoted = quote(value, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted
