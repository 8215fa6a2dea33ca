"""The search route's hot path: ``GET /api/v1/assets`` answered by plain ASGI.

Search is the catalogue's most frequent request, and most of its server time went to layers
it does not need: Starlette's route matching over every route (Mastro's first), FastAPI's
dependency solving for a route whose only dependency is the read guard, the request wrapper
``CairnRoute`` puts around a body this route never reads, and the exception middleware's
wrapping. This middleware sits inside the shared ones (metrics, body limit, CORS), so those
still see the request, and answers the one route directly:

- the key check is the read guard's own (``KeyChecker``, only when reads need a key), done
  before anything else, as ``CairnRoute`` does;
- parameters are parsed by ``parse_search``, the route's own hand parser (the FastAPI route
  never validated them either), so a bad value gets the same 422 naming the parameter;
- a ``CairnError`` becomes the same problem+json the app's handler renders; any other error
  propagates to the app's outermost handler, which logs it and answers a 500 problem;
- metrics count it under the route's template, as before;
- the answer is the route's bytes (``splice_page``), with the same headers.

The FastAPI route stays registered: it documents the route in OpenAPI, and requests this
handler passes on (other methods) are routed as before.
"""

from __future__ import annotations

import logging

from starlette.datastructures import QueryParams
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from cairn.errors import CairnError
from cairn.web import KeyChecker, problem_response
from catalogue_service.api.search_params import parse_search
from catalogue_service.service import Catalogue, splice_page

PATH = "/api/v1/assets"
log = logging.getLogger("cairn.web")


class SearchFastPath:
    def __init__(
        self, app: ASGIApp, catalogue: Catalogue, keys: KeyChecker, route: BaseRoute
    ) -> None:
        self.app = app
        self.catalogue = catalogue
        self.keys = keys
        # The FastAPI route, so metrics label the request by its template as before.
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        try:
            if self.keys.read_needs_key:
                self.keys.check(_header(scope, b"authorization"))
            query = parse_search(QueryParams(scope["query_string"]))
            body = splice_page(await self.catalogue.search(query, typos=True))
        except CairnError as exc:
            if exc.status >= 500:
                log.error("GET %s failed: %s", PATH, exc.detail)
            await problem_response(exc.status, exc.problem(PATH))(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None
