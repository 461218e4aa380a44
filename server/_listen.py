"""The collector's listening socket, and one line saying why it cannot be had (``serve`` and ``demo``)."""

from __future__ import annotations

import errno
import inspect
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uvicorn

__all__ = ["bind", "describe", "listen_problem", "serve_workers"]


def bind(host: str, port: int) -> socket.socket:
    """A non-blocking socket listening on ``host``:``port`` (0 picks a free port); OSError if it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def describe(host: str, port: int, error: OSError, free_port_hint: bool = False) -> str:
    """One line for ``error`` (from binding ``host``:``port``) that says what to do."""
    if error.errno == errno.EADDRINUSE:
        other = "pass --port with another port (--port 0 picks a free one)" if free_port_hint else \
            "pass --port with another port"
        return (f"port {port} on {host} is already in use (is another agentwatch serve or demo running?); "
                f"stop the program using it, or {other}")
    if error.errno == errno.EACCES:
        return f"cannot listen on {host}:{port}: {error.strerror or error}; pass --port with a port above 1023"
    if isinstance(error, socket.gaierror) or error.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}:{port}: {error.strerror or error}; check --host"
    return f"cannot listen on {host}:{port}: {error}"


def listen_problem(host: str, port: int, free_port_hint: bool = False) -> str | None:
    """One line saying why nothing can listen on ``host``:``port`` and what to do, or None (binds it once)."""
    try:
        bind(host, port).close()
    except OSError as error:
        return describe(host, port, error, free_port_hint)
    except OverflowError as error:  # a port out of range, which Settings.validate refuses first
        return f"cannot listen on {host}:{port}: {error}"
    return None


def serve_workers(config: uvicorn.Config, sock: socket.socket) -> None:
    """Run ``config.workers`` uvicorn worker processes serving on ``sock``, bound by the caller, until stopped.

    ``uvicorn.run`` binds a socket of its own for its workers; given this one, the address said at start-up (a port
    picked by --port 0 included) is the one they serve on."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    sock.set_inheritable(True)
    # uvicorn before 0.36 needs the workers' function; later ones run uvicorn.Server(config).run and take no target.
    if "target" in inspect.signature(Multiprocess).parameters:
        Multiprocess(config, target=uvicorn.Server(config).run, sockets=[sock]).run()  # type: ignore[call-arg]
    else:
        Multiprocess(config, sockets=[sock]).run()
