"""The search route's hot path: ``GET /api/v1/assets`` answered by plain ASGI in front of
FastAPI's whole middleware stack (``CairnApp.front``; what that keeps and skips:
``cairn.front``).

Search is the catalogue's most frequent request, and most of its server time went to layers
it does not need. Parameters are parsed by the route's own hand parser
(``parse_query_string`` reads the query string as ``parse_search`` reads ``QueryParams``; the
FastAPI route never validated them either), so a bad value gets the same 422 naming the
parameter, and the answer is the route's bytes (``splice_page``), with the same headers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import Scope

from cairn.front import FrontRoute
from catalogue_service.api.search_params import parse_query_string
from catalogue_service.service import Catalogue, splice_page

if TYPE_CHECKING:
    from cairn.web import CairnApp

PATH = "/api/v1/assets"


class SearchFastPath(FrontRoute):
    def __init__(self, app: CairnApp, catalogue: Catalogue) -> None:
        super().__init__(app, PATH, "GET")
        self.catalogue = catalogue

    async def answer(self, scope: Scope, body: bytes) -> bytes:
        query = parse_query_string(scope["query_string"])
        return splice_page(await self.catalogue.search(query, typos=True))
