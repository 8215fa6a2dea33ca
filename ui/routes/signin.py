"""Signing in with an API key (only when reads need one) and signing out again."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cairn.web import from_another_site
from ui.backend import Backend, KeyRejected, ServiceDown
from ui.render import note_down, render
from ui.visitor import MAX_KEY, forget, local_url, remember

router = APIRouter(include_in_schema=False)

MAX_FORM = 3 * MAX_KEY


def signin_page(
    request: Request, next_url: str, message: str = "", status_code: int = 200
) -> HTMLResponse:
    response = render(
        request,
        "signin.html",
        status_code=status_code,
        next_url=local_url(next_url),
        message=message,
        signed_in=False,
    )
    if message:
        forget(response, request)  # a refused key must not be sent again
    return response


@router.get("/signin", response_class=HTMLResponse)
async def signin_form(request: Request) -> Response:
    backend: Backend = request.app.state.backend
    if not backend.keys_needed:
        return RedirectResponse("/", status_code=303)
    return signin_page(request, request.query_params.get("next", "/"))


@router.post("/signin", response_class=HTMLResponse)
async def signin(request: Request) -> Response:
    backend: Backend = request.app.state.backend
    if not backend.keys_needed:
        return RedirectResponse("/", status_code=303)
    if from_another_site(request.headers):
        return signin_page(request, "/", "Sign in from this site's own page.", 403)
    body = await request.body()
    form = parse_qs(body[:MAX_FORM].decode("utf-8", "replace"), max_num_fields=10)
    next_url = local_url((form.get("next") or ["/"])[0])
    key = (form.get("key") or [""])[0].strip()
    if not key:
        return signin_page(request, next_url, "Enter your API key.", 400)
    if len(key) > MAX_KEY:
        return signin_page(request, next_url, "That is longer than any API key.", 400)
    try:
        await backend.reader(key).check_key()
    except KeyRejected as exc:
        return signin_page(
            request,
            next_url,
            f"The {exc.label.lower()} did not accept that key. Check the key you were given "
            "and try again.",
            401,
        )
    except ServiceDown as exc:
        note_down(request, exc)
        return signin_page(
            request,
            next_url,
            "Neither service answered, so the key could not be checked. Try again when they "
            "are up.",
            503,
        )
    response = RedirectResponse(next_url, status_code=303)
    remember(response, request, key)
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    response = RedirectResponse("/signin", status_code=303)
    if not from_another_site(request.headers):
        forget(response, request)
    return response
