"""Serving `datagen view`: the sources opened, the app built for them, and uvicorn on a loopback socket."""

import ipaddress
import logging
import socket
from collections.abc import Callable
from pathlib import Path

from datagen.errors import DatagenError
from datagen.util import Stopped, handling_stop_signals
from datagen.metrics.scoring import review_criteria
from datagen.runs.cost import run_prices
from datagen.view.app import Viewed, create_app
from datagen.view.data import open_sources, overview
from datagen.workspace import Config

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def viewed_sources(targets: list[Path], workspace: Path, config: Config) -> list[Viewed]:
    """Each target opened, with what its pages need.

    Args:
        targets: Run folders and evaluations, as datagen.view.data.open_sources takes them.
        workspace: The workspace whose metrics modules give the rating criteria: a source's pipeline's CRITERIA
            (none for a pipeline the workspace does not have: a warning is logged).
        config: The configuration that prices the models a run used (datagen.runs.cost.run_prices; none when
            they cannot be priced).

    Returns:
        A Viewed per source, in the order of `targets`.

    Raises:
        DatagenError: A target is neither a run folder nor an evaluation.
    """
    viewed = []
    for source in open_sources(targets):
        summary = overview(source)
        pipeline = summary["meta"].get("pipeline", "")
        try:
            criteria = review_criteria(pipeline, workspace) if pipeline else {}
        except DatagenError as exc:  # a run of a pipeline this workspace does not have: reviewed without criteria
            log.warning("%s: no rating criteria (%s)", source.label, exc)
            criteria = {}
        try:
            prices = run_prices(summary["usage"], config)
        except DatagenError:
            prices = {}
        viewed.append(Viewed(source, criteria, prices))
    return viewed


def check_host(host: str, allow_remote: bool) -> None:
    """Refuse an address other than loopback unless `allow_remote`: the app has no login, and anyone who reaches
    it can read every sample and change reviews.

    Args:
        host: The address to listen on (a name or an IPv4 or IPv6 address).
        allow_remote: Whether the user allowed an address other machines can reach (--allow-remote).

    Raises:
        DatagenError: `host` is not a loopback address and `allow_remote` is false.
    """
    loopback = host in LOOPBACK
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if not loopback and not allow_remote:
        raise DatagenError(f"--host {host}: datagen view has no login, so it listens on 127.0.0.1 only; add "
                           "--allow-remote to serve it to other machines (anyone who reaches it can read and review)")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port.

    Args:
        host: The address to listen on; one with a colon is IPv6.
        port: The port; 0 takes a free one.

    Returns:
        The socket, listening.

    Raises:
        DatagenError: The address cannot be bound (one line, naming the port).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise DatagenError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): choose another --port") from None
    sock.listen(128)
    return sock


def serve(viewed: list[Viewed], host: str, port: int, *, secrets_shown: list[str] = (),
          on_ready: Callable[[str], None] = print) -> None:
    """Serve the app over `viewed` until a stop signal (Ctrl-C, SIGTERM, SIGHUP) shuts it down gracefully.

    Args:
        viewed: The sources to show (viewed_sources).
        host: The address to listen on (check_host first). On one of LOOPBACK, requests must name it or another
            loopback name in their Host header (no DNS rebinding); on any other, every Host is accepted.
        port: The port; 0 takes a free one.
        secrets_shown: Texts to blank out of every page besides API keys (the configured api_bases).
        on_ready: Called with the app's URL once the socket listens.

    Raises:
        DatagenError: The address cannot be bound, or `viewed` is empty.
        Stopped: (a KeyboardInterrupt) once a stop signal has shut the server down, naming the signal.
    """
    import uvicorn

    sock = bind(host, port)
    bound = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    hosts = [host, "127.0.0.1", "localhost", "[::1]"] if host in LOOPBACK else ["*"]
    app = create_app(viewed, hosts=hosts, secrets_shown=secrets_shown)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    on_ready(f"http://{shown_host}:{bound}/")
    received = []

    def shut_down(signum, frame) -> None:
        received.append(signum)
        server.handle_exit(signum, frame)

    # Every stop signal shuts the server down gracefully (uvicorn does it for SIGINT and SIGTERM; SIGHUP too here,
    # which raising in the event loop would not), then stops the command as Ctrl-C does.
    with handling_stop_signals(shut_down):
        server.run(sockets=[sock])
    if received:
        raise Stopped(received[0])
