"""What each service's command group shares (``cairn featureset``, ``cairn assets``): a client
for the base URL asked (``--url``, else the service's ``CAIRN_*_URL``), and one error line when
a call fails, which says which URL to give when another service answered there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

import orjson
import typer

from cairn.cli_errors import problem_line
from cairn.errors import CairnError

JsonOption = Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")]


def print_json(data: Any) -> None:
    typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def usage(problem: str, option: str) -> NoReturn:
    """Exit 2, as click does for a bad option: the command line itself is wrong."""
    raise typer.BadParameter(problem, param_hint=f"'{option}'")


def key_values(values: list[str] | None, option: str = "--label") -> dict[str, str]:
    """``key:value`` options as a dict; exit 2 naming ``option`` for one without a colon."""
    out = {}
    for value in values or ():
        key, sep, val = value.partition(":")
        if not sep or not key:
            usage(f"{value!r} must look like key:value, for example team:ml", option)
        out[key] = val
    return out


def another_service_answered(exc: CairnError) -> bool:
    """A 404 or 405 for a route the service always serves: another service answered (a Cairn
    service's "No route ..." problem, the UI's HTML page, any other web server's 404)."""
    detail = exc.detail
    return exc.status in (404, 405) and (
        detail.startswith(("No route ", "HTTP 404 from ", "HTTP 405 from "))
        or detail in ("Not Found", "Method Not Allowed")
        or " is not allowed on " in detail
    )


@dataclass
class ServiceCommands:
    """``service``: how the error line names it ("feature store"); ``variable``: its URL
    setting; ``example``: its usual base URL; ``make``: a client for a base URL;
    ``default_url``: the settings' URL of the service (read when no ``--url`` is given)."""

    service: str
    variable: str
    example: str
    make: Callable[[str], Any]
    default_url: Callable[[], str]
    # The base URL the last client was made for: the error line names it.
    asked: str | None = None

    def client(self, url: str | None) -> Any:
        self.asked = url or self.default_url()
        return self.make(self.asked)

    def wrong_service(self, exc: CairnError) -> bool:
        """Whether ``exc`` came from something else than this service at the URL asked."""
        return self.asked is not None and another_service_answered(exc)

    def fail(self, problem: str | CairnError) -> NoReturn:
        """Exit 1 with one error line: ``problem``, or a service's problem as the CLI words it."""
        if isinstance(problem, str):
            message = problem
        elif self.asked is not None and another_service_answered(problem):
            from cairn.redact import redact_url

            message = (
                f"{redact_url(self.asked)} does not answer as a {self.service} "
                f"({problem.detail}); give the {self.service}'s base URL "
                f"(e.g. {self.example}) with --url or {self.variable}"
            )
        else:
            message = problem_line(problem)
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1)
