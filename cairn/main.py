"""The ``cairn`` command's entry point."""

from __future__ import annotations

import sys

from cairn.interrupt import EXIT_INTERRUPTED, ctrl_c_ends_process


def main() -> None:
    # Ctrl-C during the imports (a third of a second) ends the command without the import
    # machinery's traceback; Python's KeyboardInterrupt is back for the command itself.
    with ctrl_c_ends_process():
        from cairn.cli import app
    try:
        app(prog_name="cairn")
    except KeyboardInterrupt:
        # Ctrl-C while typer builds the command line from the commands' signatures (tens of
        # milliseconds, no thread started yet, no command begun): ended as in the imports.
        # Once a command runs, click or the command itself answers Ctrl-C.
        sys.exit(EXIT_INTERRUPTED)
