"""The ``cairn`` command's entry point."""

from __future__ import annotations

from cairn.interrupt import ctrl_c_ends_process


def main() -> None:
    # Ctrl-C during the imports (a third of a second) ends the command without the import
    # machinery's traceback; Python's KeyboardInterrupt is back for the command itself.
    with ctrl_c_ends_process():
        from cairn.cli import app
    app(prog_name="cairn")
