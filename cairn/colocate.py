"""Several of Cairn's services in one Python process, as ``cairn up`` runs them.

Each service keeps its own FastAPI app, port, lifespan (start-up, readiness, shutdown) and
log label; they share one interpreter, one event loop and the libraries they import
(pyarrow, pydantic, FastAPI, SQLite). Four processes (a supervisor and three servers) each
loaded those again: about 310 MiB before any work, against about 160 MiB for one process
(benchmarks/bench_footprint.py). ``cairn serve <service>`` and the compose file still run
one service per process, where each can be scaled and restarted alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from cairn.http_head import BoundedHttpToolsProtocol

log = logging.getLogger("cairn.up")

# Which service the running request, lifespan or background task belongs to; tasks and worker
# threads started from there inherit it, so every log line can name its service.
SERVICE: contextvars.ContextVar[str] = contextvars.ContextVar("cairn_service", default="up")


class ServiceLabel:
    """Runs an app with ``SERVICE`` set to its name (requests and lifespan alike)."""

    def __init__(self, app: ASGIApp, name: str) -> None:
        self.app = app
        self.name = name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = SERVICE.set(self.name)
        try:
            await self.app(scope, receive, send)
        finally:
            SERVICE.reset(token)


class ServiceField(logging.Filter):
    """Gives every record a ``service`` attribute for the log format."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = SERVICE.get()
        return True


class _Server(uvicorn.Server):
    """A uvicorn server that leaves SIGINT and SIGTERM to its ``Colocated`` group.

    ``Server.serve`` replaces the process's signal handlers with its own for as long as it
    runs; with several servers only the last one started would hear a Ctrl-C.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class StartFailed(RuntimeError):
    """A service could not bind its port or its lifespan start-up failed."""


@dataclass(slots=True)
class _Running:
    server: _Server
    task: asyncio.Task[None]


class Colocated:
    """uvicorn servers sharing the running event loop; stopped together."""

    def __init__(self) -> None:
        self.running: dict[str, _Running] = {}

    async def start(
        self, name: str, app: ASGIApp, host: str, port: int, log_level: str = "info"
    ) -> None:
        """Starts serving ``app`` and returns once it listens (its lifespan has started)."""
        config = uvicorn.Config(
            ServiceLabel(app, name),
            host=host,
            port=port,
            http=BoundedHttpToolsProtocol,
            log_level=log_level,
            access_log=False,
            timeout_graceful_shutdown=5,
            lifespan="on",
            # uvicorn's own lines go through the root logger too, so they carry the label.
            log_config=None,
        )
        server = _Server(config)
        # The server's own lines (listening, shutting down) are labelled as well.
        context = contextvars.copy_context()
        context.run(SERVICE.set, name)
        task = asyncio.create_task(self._serve(server), name=f"serve-{name}", context=context)
        self.running[name] = _Running(server, task)
        while not server.started:
            if task.done():
                # Most often another program holds the port: say which, and the setting.
                raise StartFailed(
                    f"the {name} service did not start on {host}:{port} (see the log above); "
                    f"if another program holds that port, set CAIRN_{name.upper()}_PORT to a "
                    "free one"
                )
            await asyncio.sleep(0.02)

    @staticmethod
    async def _serve(server: _Server) -> None:
        # uvicorn ends the process with sys.exit(1) when it cannot bind; here that would take
        # the other services down without their shutdown, so it only ends this task.
        with contextlib.suppress(SystemExit):
            await server.serve()

    def stop(self, force: bool = False) -> None:
        """Asks every server to finish: close its sockets, wait for open requests (``force``:
        don't), run its lifespan's shutdown."""
        for running in self.running.values():
            running.server.should_exit = True
            running.server.force_exit = running.server.force_exit or force

    def exited(self) -> str | None:
        """The name of a service whose server has stopped, if one has."""
        for name, running in self.running.items():
            if running.task.done():
                return name
        return None

    async def wait_any_exit(self) -> None:
        await asyncio.wait(
            [r.task for r in self.running.values()], return_when=asyncio.FIRST_COMPLETED
        )

    async def close(self) -> None:
        """Stops every server (in reverse start order) and waits for their shutdown."""
        self.stop()
        for running in reversed(list(self.running.values())):
            await asyncio.gather(running.task, return_exceptions=True)
