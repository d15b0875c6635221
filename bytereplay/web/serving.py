"""Run a service app under uvicorn on sockets bound here first.

`bind(host, port)` takes the address before anything else is logged or loaded: it binds
and listens at once (bound alone, two sockets with SO_REUSEADDR could share the port
until one listens), so a busy port (or a host that does not resolve, or a port that
needs privileges) is a `UsageError`, and `bytereplay serve` prints one line and exits 2.
uvicorn is then handed these sockets and never binds itself, so nothing can take the
port between the check and the start; should starting on them fail all the same, that
is the same one-line error. Connections that arrive while the app starts wait in the
listen backlog. `serve(...)` logs the ready line only once uvicorn serves them.

`serve_workers(factory, sockets, workers=N)` serves the address from N processes
(uvicorn's supervisor: spawned children, each building its app from the import string
`factory`, one restarted on its own listener if it dies). Each child has its own
listener on the one address (SO_REUSEPORT; `bind(..., reuse_port=True)` and
`reuse_port_twins`), and the kernel spreads new connections over them by hash: with one
shared listener, a burst of connections goes to whichever child wakes first, and
keep-alive connections stay there, so one child could serve most of the load while the
other idles. (Only processes of the same user can join such a listener group.) The ready
line comes once every child serves.
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


def bind(host: str, port: int, *, reuse_port: bool = False) -> list[socket.socket]:
    """Bound, listening TCP sockets for every address `host` names; UsageError naming
    the address when one cannot be bound. `reuse_port`: SO_REUSEPORT, so that
    `reuse_port_twins` can bind more listeners to the same address (`serve_workers`)."""
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
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
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


def reuse_port_twins(sockets: list[socket.socket]) -> list[socket.socket]:
    """One more listener on each address of `sockets` (bound with `reuse_port`): the
    kernel spreads new connections over the listeners of one address by their hash."""
    twins: list[socket.socket] = []
    try:
        for sock in sockets:
            twin = socket.socket(sock.family, sock.type, sock.proto)
            twins.append(twin)
            twin.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            twin.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if sock.family == socket.AF_INET6:
                twin.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            twin.bind(sock.getsockname())
            twin.listen(BACKLOG)
    except OSError as exc:
        for twin in twins:
            twin.close()
        host, port = sockets[0].getsockname()[:2]
        raise _refusal(str(host), int(port), exc) from None
    return twins


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


def serve_workers(factory: str, groups: list[list[socket.socket]], *,
                  on_listening: Callable[[], None], log_level: str = "warning") -> int:
    """Run the app that the import string `factory` (a zero-argument callable) builds in
    one process per listener group of `groups`, until stopped (SIGINT or SIGTERM)."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess
    from uvicorn.supervisors.multiprocess import Process

    class _Supervisor(Multiprocess):
        announced = False

        def _start(self, index: int) -> Process:
            process = Process(self.config, groups[index])
            process.start()
            return process

        def init_processes(self) -> None:
            self.processes = [self._start(i) for i in range(len(groups))]

        def keep_subprocess_alive(self) -> None:
            if self.should_exit.is_set():
                return
            for index, process in enumerate(self.processes):
                if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                    continue
                process.kill()  # hung, or dead already
                process.join()
                if process.exitcode == STARTUP_FAILURE:  # would fail again: stop
                    log.error("process %s failed to start; stopping", process.pid)
                    self.should_exit.set()
                    return
                log.warning("process %s died; starting another on its listener", process.pid)
                self.processes[index] = self._start(index)
            # Same thread as the health pings: the children's pipes are never shared.
            if not self.announced and all(p.is_ready(timeout=1) for p in self.processes):
                self.announced = True
                on_listening()

    sockets = [sock for group in groups for sock in group]
    config = uvicorn.Config(factory, factory=True, workers=len(groups), log_config=None,
                            log_level=log_level, access_log=False, server_header=False,
                            lifespan="on")
    supervisor = _Supervisor(config, sockets=sockets)
    log.debug("supervisor %d serving with %d processes", os.getpid(), len(groups))
    try:
        supervisor.run()
    finally:
        for sock in sockets:
            sock.close()
    return 0 if supervisor.announced else 1
