"""The search page (home): one query box, tag and type facets, cursor pagination."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ui.backend import ApiError, ServiceDown
from ui.format import terms
from ui.render import note_down, render
from ui.state import PAGE_SIZE, SearchState
from ui.visitor import ReaderDep

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def search(request: Request, api: ReaderDep) -> HTMLResponse:
    state, notices = SearchState.parse(request.query_params)
    result: dict[str, Any] | None = None
    try:
        try:
            result = await api.search(**state.search_args())
        except ApiError:
            if not state.cursor:
                raise
            # A stale or foreign cursor: say so and show the first page of the same search.
            notices.append("That page link has expired, so this is the first page again.")
            state.cursor, state.back, state.page = "", [], 1
            result = await api.search(**state.search_args())
    except ServiceDown as exc:
        note_down(request, exc)
    except ApiError as exc:
        notices.append(f"The catalogue could not run this search: {exc.detail}")
        result = {"items": [], "total": 0, "facets": {}, "next_cursor": None}

    suggestions: list[dict[str, Any]] = []
    if result is not None and not result.get("total") and not state.is_empty:
        try:
            suggestions = (await api.tags(12))[:12]
        except (ServiceDown, ApiError):
            suggestions = []
    status = 503 if result is None else 200
    return render(
        request,
        "search.html",
        status_code=status,
        state=state,
        # Results of the fuzzy fallback answer the corrected query: highlight its words.
        words=terms(result["did_you_mean"] if result and result.get("fuzzy") else state.q),
        result=result,
        notices=notices,
        suggestions=suggestions,
        page_size=PAGE_SIZE,
    )
