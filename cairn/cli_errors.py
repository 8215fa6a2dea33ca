"""How the ``cairn`` command prints a service's problem: one line, with what to do at the shell.

The services' own words (the problem's detail) are what the client library raises and the web
UI shows; only the command line adds a hint about its environment, since the UI's visitors sign
in with a key and never set a variable.
"""

from __future__ import annotations

from cairn.errors import CairnError, Unauthorized


def problem_line(exc: CairnError) -> str:
    """``exc``'s detail, and for a 401 how to send a key the service accepts."""
    if not isinstance(exc, Unauthorized):
        return exc.detail
    return f"{exc.detail.rstrip()} Hint: {key_hint(_key_sent())}."


def validation_line(exc: ValueError) -> str:
    """A failure of a check made before sending (a model's validation) as the API would word
    it: the fields, on one line."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        from cairn.web import invalid_request  # the web layer: imported only on this error

        return invalid_request(exc).detail
    return str(exc)


def key_hint(key_sent: bool, service: str = "the service") -> str:
    """What to set when ``service`` answered 401, depending on whether a key went with the
    request (the CLI's clients and the crawler send CAIRN_API_KEY)."""
    if key_sent:
        return (
            f"the key in CAIRN_API_KEY was refused: set CAIRN_API_KEY to one of {service}'s "
            "keys (its CAIRN_API_KEYS)"
        )
    return (
        f"no key was sent: set CAIRN_API_KEY to one of {service}'s keys (its "
        "CAIRN_API_KEYS), e.g. export CAIRN_API_KEY=<key>"
    )


def _key_sent() -> bool:
    # The key every command's client sends comes from the settings (CAIRN_API_KEY).
    from cairn.settings import get_settings  # here: `cairn --help` needs no settings

    key = get_settings().api_key
    return key is not None and bool(key.get_secret_value())
