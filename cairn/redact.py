"""URLs as they may be shown or logged: without the secrets a URL can carry."""

from __future__ import annotations

import re

_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def redact_url(url: str) -> str:
    """``url`` without its userinfo password, query string and fragment; paths pass unchanged.

    Query strings go whole: SAS tokens, delegation tokens and signed-URL parameters all live
    there, and telling harmless parameters from secret ones is not worth the risk in a log line.
    """
    match = _URL.match(url)
    if match is None:
        return url
    rest = url[match.end() :]
    for sep in ("?", "#"):
        rest = rest.partition(sep)[0]
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        # rpartition: an unencoded '@' inside a password must not leave half of it behind
        userinfo, _, hostport = authority.rpartition("@")
        user = userinfo.partition(":")[0]
        authority = f"{user}@{hostport}" if user else hostport
    return f"{match.group(1)}://{authority}{slash}{path}"
