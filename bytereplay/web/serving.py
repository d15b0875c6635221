"""Run a service app under uvicorn on sockets bound here first.

`bind(host, port)` takes the address before anything else is logged or loaded: it binds
and listens at once (bound alone, two sockets with SO_REUSEADDR could share the port
until one listens), so a busy port (or a host that does not resolve, or a port that
needs privileges) is a `UsageError`, and `bytereplay serve` prints one line and exits 2.
uvicorn is then handed these sockets and never binds itself, so nothing can take the
port between the check and the start; should starting on them fail all the same, that
is the same one-line error. Connections that arrive while the app starts wait in the
listen backlog. `serve(...)` logs the ready line only once uvicorn serves them.

`serve_workers(factory, sockets, workers=N)` serves the same sockets from N processes
(uvicorn's own supervisor: spawned children, each building its app from the import
string `factory`, restarted if one dies); the kernel hands each new connection to one of
them. The ready line comes once every child serves.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from bytereplay.errors import UsageError

log = logging.getLogger("bytereplay.serve")
BACKLOG = 2048  # uvicorn's default


def _refusal(host: str, port: int, exc: OSError) -> UsageError:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return UsageError(f"cannot listen on {where}: the port is already in use "
                          "(stop the other process or choose another --port)")
    if exc.errno == errno.EACCES:
        return UsageError(f"cannot listen on {where}: permission denied "
                          "(ports below 1024 need privileges; choose another --port)")
    if exc.errno == errno.EADDRNOTAVAIL:
        return UsageError(f"cannot listen on {where}: the address is not on this machine "
                          "(check --host)")
    return UsageError(f"cannot listen on {where}: {exc.strerror or exc}")


def bind(host: str, port: int) -> list[socket.socket]:
    """Bound, listening TCP sockets for every address `host` names; UsageError naming
    the address when one cannot be bound."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: expected 0..65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        detail = getattr(exc, "strerror", None) or "not a host name or address"
        raise UsageError(f"cannot listen on {host}:{port}: {detail} (check --host)") from None
    seen: set[tuple[int, Any]] = set()
    sockets: list[socket.socket] = []
    unavailable: OSError | None = None
    try:
        for family, type_, proto, _name, addr in infos:
            if (family, addr) in seen or family not in (socket.AF_INET, socket.AF_INET6):
                continue
            seen.add((family, addr))
            try:
                sock = socket.socket(family, type_, proto)
            except OSError as exc:  # this family is off on this machine (as asyncio skips it)
                unavailable = exc
                continue
            # As uvicorn does: restart at once over TIME_WAIT; a live listener still refuses.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(addr)
                sock.listen(BACKLOG)
            except OSError as exc:
                sock.close()
                if exc.errno != errno.EADDRNOTAVAIL:
                    raise
                unavailable = exc  # e.g. ::1 for "localhost" where IPv6 is off
                continue
            sockets.append(sock)
        if not sockets:
            raise unavailable or OSError(errno.EADDRNOTAVAIL, "no IPv4 or IPv6 address")
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise _refusal(host, port, exc) from None
    return sockets


def url_of(host: str, sockets: list[socket.socket]) -> str:
    """http://host:port with the port actually bound (so --port 0 names the real one)."""
    port = int(sockets[0].getsockname()[1])
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def serve(app: Any, sockets: list[socket.socket], *, on_listening: Callable[[], None],
          log_level: str = "warning") -> int:
    """Run `app` on `sockets` until stopped; `on_listening()` once uvicorn accepts on
    them. uvicorn leaves logging as configured (no dictConfig of its own), so its lines
    come out in the chosen format too."""
    import uvicorn

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and not self.should_exit:
                on_listening()

    config = uvicorn.Config(app, log_config=None, log_level=log_level, access_log=False,
                            server_header=False, lifespan="on")
    server = _Server(config)
    host, port = sockets[0].getsockname()[:2]
    try:
        server.run(sockets=sockets)
    except OSError as exc:
        if server.started:
            raise
        raise _refusal(str(host), int(port), exc) from None
    finally:
        for sock in sockets:
            sock.close()
    return 0 if server.started else 1


def serve_workers(factory: str, sockets: list[socket.socket], *, workers: int,
                  on_listening: Callable[[], None], log_level: str = "warning") -> int:
    """Run the app that the import string `factory` (a zero-argument callable) builds in
    `workers` processes sharing `sockets`, until stopped (SIGINT or SIGTERM)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    if workers < 1:
        raise UsageError(f"--workers {workers}: expected at least 1")

    class _Supervisor(Multiprocess):
        announced = False

        def keep_subprocess_alive(self) -> None:
            super().keep_subprocess_alive()
            # Same thread as the health pings: the children's pipes are never shared.
            if not self.announced and not self.should_exit.is_set() and \
                    all(p.is_ready(timeout=1) for p in self.processes):
                self.announced = True
                on_listening()

    config = uvicorn.Config(factory, factory=True, workers=workers, log_config=None,
                            log_level=log_level, access_log=False, server_header=False,
                            lifespan="on")
    supervisor = _Supervisor(config, sockets=sockets)
    log.debug("supervisor %d serving with %d workers", os.getpid(), workers)
    try:
        supervisor.run()
    finally:
        for sock in sockets:
            sock.close()
    return 0 if supervisor.announced else 1
