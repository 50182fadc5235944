"""`pumpctl dashboard`: serve the live page of every pump streaming to a broker.

The web server and MQTT client are imported inside the command, so other commands do not
pay for them at start-up.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pumpctl.errors import UsageError

if TYPE_CHECKING:
    import ssl

LISTEN_DEFAULT = "127.0.0.1:8080"


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `[IPv6]:PORT` (port 0 picks a free one)."""
    host, sep, port_text = text.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit():
        raise UsageError(f"--listen {text!r}: expected HOST:PORT, e.g. {LISTEN_DEFAULT}")
    port = int(port_text)
    if port > 65535:
        raise UsageError(f"--listen {text!r}: port {port} is out of range 0..65535")
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _web_tls(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None:
        raise UsageError("--tls-key given without --tls-cert")
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(cert), str(key) if key else None)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"--tls-cert {cert}: unusable ({exc})") from None
    return context


def dashboard(
    mqtt: Annotated[str, typer.Option(
        "--mqtt", envvar="PUMPCTL_MQTT", metavar="URL",
        help="Broker: mqtt://[user@]host[:port] or mqtts://user@host:8883[?ca=FILE], as for "
        "`run --mqtt` (same ?prefix= template).")] = "mqtt://127.0.0.1:1883",
    mqtt_password_file: Annotated[Path | None, typer.Option(
        "--mqtt-password-file", metavar="FILE",
        help="File whose first line is the broker password (else $PUMPCTL_MQTT_PASSWORD).")
    ] = None,
    listen: Annotated[str, typer.Option(
        "--listen", metavar="HOST:PORT", help="Where the page is served.")] = LISTEN_DEFAULT,
    site: Annotated[str | None, typer.Option(
        "--site", help="Only pumps of this site (default: every site).")] = None,
    remote_commands: Annotated[bool, typer.Option(
        "--remote-commands", help="Offer stop and pause (never start or a rate) behind a "
        "login, for runs started with --remote-commands.")] = False,
    login_password_file: Annotated[Path | None, typer.Option(
        "--login-password-file", metavar="FILE",
        help="File whose first line is the dashboard login password (else "
        "$PUMPCTL_DASHBOARD_PASSWORD); needed with --remote-commands.")] = None,
    tls_cert: Annotated[Path | None, typer.Option(
        "--tls-cert", metavar="FILE", help="Serve the page over HTTPS with this certificate "
        "(needed for --remote-commands on a non-loopback address).")] = None,
    tls_key: Annotated[Path | None, typer.Option(
        "--tls-key", metavar="FILE", help="Private key of --tls-cert.")] = None,
) -> None:
    """Serve a live page of every pump on the broker (read-only unless --remote-commands).

    Exit codes: 0 stopped by Ctrl-C, SIGTERM, SIGHUP or SIGQUIT; 2 bad options.
    """
    import asyncio
    import logging

    from pumpctl.dashboard.auth import PASSWORD_ENV, read_login_password
    from pumpctl.dashboard.layout import TopicLayout
    from pumpctl.dashboard.server import DashboardConfig
    from pumpctl.telemetry.urls import parse_mqtt_url, read_password

    target = parse_mqtt_url(mqtt)
    layout = TopicLayout(target.prefix, site)
    host, port = parse_listen(listen)
    mqtt_password = read_password(mqtt_password_file)
    web_ssl = _web_tls(tls_cert, tls_key)
    login_password = read_login_password(login_password_file)
    target.ssl_context()  # missing or unreadable broker TLS files are reported now
    if remote_commands:
        if target.username is None:
            raise UsageError("--remote-commands needs an authenticated broker user in --mqtt "
                             "(mqtts://operator@host): the ACL vouches for the sender")
        if login_password is None:
            raise UsageError(f"--remote-commands needs a login password: set {PASSWORD_ENV} "
                             "or --login-password-file FILE")
        if web_ssl is None and not is_loopback(host):
            raise UsageError(f"--remote-commands on {host} needs --tls-cert/--tls-key: the "
                             "login password would cross the network in clear")
    config = DashboardConfig(target=target, layout=layout, mqtt_password=mqtt_password,
                             host=host, port=port, remote_commands=remote_commands,
                             login_password=login_password, web_ssl=web_ssl)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    asyncio.run(_serve(config))


async def _serve(config: object) -> None:
    import asyncio
    import contextlib

    from pumpctl.commands import STOP_SIGNALS
    from pumpctl.dashboard.server import Dashboard, DashboardConfig

    assert isinstance(config, DashboardConfig)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    dashboard = Dashboard(config)
    url = await dashboard.start()
    mode = "stop/pause behind a login" if config.remote_commands else "read-only"
    typer.echo(f"pumpctl dashboard on {url} ({mode}); broker {config.target.display}, "
               f"topics {', '.join(config.layout.filters)}", err=True)
    try:
        await stop.wait()
    finally:
        await dashboard.stop()
