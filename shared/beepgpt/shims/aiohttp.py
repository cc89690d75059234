"""aiohttp internals: the listening server behind a started `web.TCPSite`."""

from __future__ import annotations

from aiohttp import web


def bound_port(site: web.TCPSite, requested: int) -> int:
    """The port a started site listens on (the OS's choice when `requested` is 0).

    Touches `site._server` (the `asyncio.Server` that `TCPSite.start()` creates): aiohttp has no
    public way to read the bound address, and tests bind port 0. Falls back to `requested` when
    the server has no sockets.
    """
    sockets = getattr(site._server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else requested
