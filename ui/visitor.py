"""Whose key a page reads with.

With reads open (``CAIRN_READ_NEEDS_KEY`` false) nobody signs in and pages read with no key.
When reads need a key, the UI must not show a visitor what the API would refuse them, so it
asks each visitor for their own key (``/signin``), keeps it in a cookie only this site's pages
carry (HttpOnly, SameSite=Strict, Secure over https) and sends it with every read made for
them. The UI's own ``CAIRN_API_KEY`` never reads on anyone's behalf. A missing key sends the
visitor to the sign-in page; a key a service refuses brings them back to it with a message.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import Response

from ui.backend import Backend, Reader

COOKIE = "cairn_key"
MAX_KEY = 4096


class SignInNeeded(Exception):
    """Reads need a key and this visitor has given none."""

    def __init__(self, next_url: str):
        super().__init__(next_url)
        self.next_url = next_url


def here(request: Request) -> str:
    """The page asked for, to come back to after signing in."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def local_url(value: str | None) -> str:
    """``value`` when it is a path on this site, else the home page (no open redirect)."""
    if (
        not value
        or not value.startswith("/")
        or value.startswith(("//", "/\\"))
        or any(c < " " or c == "\x7f" for c in value)
    ):
        return "/"
    return value


def signin_url(next_url: str) -> str:
    target = local_url(next_url)
    return "/signin" if target == "/" else f"/signin?next={quote(target, safe='/')}"


def visitor_key(request: Request) -> str | None:
    """The key this visitor signed in with (the cookie holds it base64url-encoded)."""
    raw = request.cookies.get(COOKIE)
    if not raw or len(raw) > 2 * MAX_KEY:
        return None
    try:
        key = base64.urlsafe_b64decode(raw.encode("ascii")).decode("utf-8")
    except (ValueError, binascii.Error, UnicodeError):
        return None
    return key or None


def signed_in(request: Request) -> bool:
    backend: Backend = request.app.state.backend
    return backend.keys_needed and visitor_key(request) is not None


def remember(response: Response, request: Request, key: str) -> None:
    value = base64.urlsafe_b64encode(key.encode("utf-8")).decode("ascii")
    # No max-age: the key goes when the browser closes, or on "Sign out".
    response.set_cookie(
        COOKIE,
        value,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def forget(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )


def reader(request: Request) -> Reader:
    """The reads this request may make: with the visitor's key when reads need one."""
    backend: Backend = request.app.state.backend
    if not backend.keys_needed:
        return backend.reader(None)
    key = visitor_key(request)
    if key is None:
        raise SignInNeeded(here(request))
    return backend.reader(key)


ReaderDep = Annotated[Reader, Depends(reader)]
