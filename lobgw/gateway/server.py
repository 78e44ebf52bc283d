"""Run the gateway: `lobgw serve`. uvloop when available; SIGINT/SIGTERM shut down cleanly
(stop accepting, close WebSockets with 1001, drain the actors) and the process exits 0.

Exit codes: 0 after a clean shutdown; 2 when the listening address cannot be used, another
process holds the journal directory, or the config changes a journaled instrument (each said
in one line, before any journal is read); 3 when a journal is corrupt or unreadable (found by
recovery, which runs once the port answers `/health`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from lobgw.config import Config
from lobgw.errors import JournalCorruptError, JournalLockedError, JournalSpecError
from lobgw.gateway.app import create_app
from lobgw.gateway.connections import GuardedSite
from lobgw.gateway.keys import GUARD, STATE

log = logging.getLogger("lobgw.server")


def listen(host: str, port: int) -> socket.socket:
    """Bind the listening socket (raise OSError when the address cannot be used)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


async def serve(config: Config, ready: asyncio.Event | None = None,
                repair: bool = False) -> int:
    """Serve until SIGINT or SIGTERM, then shut down in order; return the exit code."""
    try:
        sock = listen(config.server.host, config.server.port)
    except OSError as error:
        log.error("cannot listen on %s:%s: %s", config.server.host, config.server.port,
                  error.strerror or error)
        return 2
    app = create_app(config, repair)
    runner = web.AppRunner(app, handle_signals=False, access_log=None,
                           shutdown_timeout=config.server.shutdown_timeout,
                           keepalive_timeout=config.server.keepalive_seconds)
    try:
        await runner.setup()
    except (JournalLockedError, JournalSpecError) as error:
        log.error("cannot start: %s", error)
        await runner.cleanup()
        sock.close()
        return 2
    except OSError as error:
        log.error("cannot start: %s", error)
        await runner.cleanup()
        sock.close()
        return 3
    site = GuardedSite(runner, sock, app[GUARD])
    await site.start()
    # Everything built so far lives as long as the process: keep it out of the collector's
    # full passes (shorter pauses under load).
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    for address in runner.addresses:
        log.info("listening on http://%s:%s", *address[:2])
    if ready is not None:
        ready.set()
    code = await _until_stopped(stop, app[STATE].recovery)
    log.info("shutting down")
    await runner.cleanup()
    log.info("stopped")
    return code


async def _until_stopped(stop: asyncio.Event, recovery: asyncio.Task[None] | None) -> int:
    """Wait for a stop signal; 3 instead if recovery fails first (corrupt journal)."""
    waiting = asyncio.ensure_future(stop.wait())
    pending = {waiting} | ({recovery} if recovery is not None else set())
    while waiting in pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if recovery in done and not recovery.cancelled():
            error = recovery.exception()
            if error is not None:
                waiting.cancel()
                if isinstance(error, JournalCorruptError):
                    log.error("cannot start: journal corrupt: %s", error)
                else:
                    log.error("cannot start: recovery failed: %s", error, exc_info=error)
                return 3
    return 0


def run(main: Coroutine[Any, Any, int]) -> int:
    """Run a coroutine on uvloop if it is installed, else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return asyncio.run(main)
    return uvloop.run(main)
