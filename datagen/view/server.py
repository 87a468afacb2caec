"""Serving `datagen view`: the sources opened, the app built for them, and uvicorn on a loopback socket."""

import ipaddress
import logging
import socket
from collections.abc import Callable
from pathlib import Path

from datagen.workspace.config import Config
from datagen.runs.cost import run_prices
from datagen.errors import DatagenError
from datagen.view import data
from datagen.view.app import Viewed, create_app

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def viewed_sources(targets: list[Path], workspace: Path, config: Config) -> list[Viewed]:
    """Each target opened (data.open_sources) with the criteria its pipeline's reviewers rate on (its metrics
    module's CRITERIA in `workspace`, else none) and its models' prices (datagen.runs.cost.run_prices)."""
    from datagen.metrics.scoring import review_criteria

    viewed = []
    for source in data.open_sources(targets):
        summary = data.overview(source)
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
    it can read every sample and change reviews."""
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
    """A listening socket on host:port (port 0: a free one), or a one-line error naming the port."""
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
    """Serve the app until interrupted; `on_ready(url)` is called once the socket listens."""
    import uvicorn

    sock = bind(host, port)
    bound = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    hosts = [host, "127.0.0.1", "localhost", "[::1]"] if host in LOOPBACK else ["*"]
    app = create_app(viewed, hosts=hosts, secrets_shown=secrets_shown)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    on_ready(f"http://{shown_host}:{bound}/")
    server.run(sockets=[sock])
