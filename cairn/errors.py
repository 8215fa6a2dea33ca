"""Errors that carry their HTTP status; routes only raise, one handler renders problem+json.

CairnError (500)
├── BadRequest (400)
│   └── InvalidCursor
├── Unauthorized (401)
├── Forbidden (403)
├── NotFound (404)
├── NotAcceptable (406)        no representation matches the Accept header
├── Conflict (409)
├── PayloadTooLarge (413)
├── UnsupportedMediaType (415)
├── InvalidRequest (422)       a field or parameter fails validation
├── Unavailable (503)          backend unreachable; the client may retry
└── InsufficientStorage (507)  the disk holding the data is full; retry once space is freed
"""

from __future__ import annotations

from typing import Any


class CairnError(Exception):
    status = 500
    title = "Internal error"

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []

    @property
    def type(self) -> str:
        return "https://cairn.dev/problems/" + self.title.lower().replace(" ", "-")

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = self.errors
        return body


class BadRequest(CairnError):
    status = 400
    title = "Bad request"


class InvalidCursor(BadRequest):
    title = "Invalid cursor"


class Unauthorized(CairnError):
    status = 401
    title = "Unauthorized"


class Forbidden(CairnError):
    status = 403
    title = "Forbidden"


class NotFound(CairnError):
    status = 404
    title = "Not found"


class NotAcceptable(CairnError):
    status = 406
    title = "Not acceptable"


class Conflict(CairnError):
    status = 409
    title = "Conflict"


class PayloadTooLarge(CairnError):
    status = 413
    title = "Payload too large"


class UnsupportedMediaType(CairnError):
    status = 415
    title = "Unsupported media type"


class InvalidRequest(CairnError):
    status = 422
    title = "Invalid request"


def invalid_param(name: str, message: str) -> InvalidRequest:
    """A 422 naming one query parameter and what is wrong with it."""
    return _one_wrong("parameter", name, message)


def unknown_param(name: str, taken: tuple[str, ...], hint: str | None = None) -> InvalidRequest:
    """A 422 for a query parameter a route does not take, naming the nearest one it does (or
    ``hint``) and all of them: a misspelt filter was otherwise dropped without a word, and the
    answer listed everything as if it had matched."""
    if hint is None:
        import difflib  # only on this error path

        near = difflib.get_close_matches(name.lower(), taken, n=1, cutoff=0.6)
        hint = f"did you mean {near[0]}? " if near else ""
    return invalid_param(name, f"is not a parameter of this search; {hint}use {', '.join(taken)}")


def invalid_field(name: str, message: str) -> InvalidRequest:
    """A 422 naming one field of a request body and what is wrong with it."""
    return _one_wrong("field", name, message)


def _one_wrong(kind: str, name: str, message: str) -> InvalidRequest:
    return InvalidRequest(
        f"Fix this {kind} and send again: {name}: {message}",
        errors=[{"field": name, "message": message}],
    )


class Unavailable(CairnError):
    status = 503
    title = "Service unavailable"


class InsufficientStorage(CairnError):
    status = 507
    title = "Insufficient storage"
