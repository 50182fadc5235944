"""The dashboard's web side (aiohttp): page, live stream, JSON API, login, remote commands.

    GET  /                 the page (static/index.html; every asset is served from here)
    GET  /events           Server-Sent Events: `snapshot` first, then `run`/`live`/`broker`
    GET  /api/pumps        every pump's current state with its chart history (JSON)
    GET  /healthz          200 while subscribed to the broker, 503 otherwise (JSON detail)
    GET  /api/session      whether remote commands are on and this browser is logged in
    POST /api/login        {"password"} -> session cookie + CSRF token (only with commands)
    POST /api/logout
    POST /api/pumps/{site}/{pump_id}/{stop|pause}   {"reason"} -> published on the cmd topic
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from pumpctl.dashboard.auth import COOKIE, CSRF_HEADER, Logins
from pumpctl.dashboard.board import Board
from pumpctl.dashboard.hub import Hub, sse_frame
from pumpctl.dashboard.layout import PumpTopic, TopicLayout
from pumpctl.dashboard.source import BrokerFeed, CommandError
from pumpctl.telemetry.urls import MqttTarget

log = logging.getLogger("pumpctl.dashboard")

STATIC = Path(__file__).resolve().parent / "static"
COMMANDS = ("stop", "pause")  # never start, resume or a rate: those stay at the bench
LOGIN_DELAY_S = 1.0  # every failed login costs this long, one attempt at a time
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True)
class DashboardConfig:
    target: MqttTarget
    layout: TopicLayout
    mqtt_password: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    remote_commands: bool = False
    login_password: str | None = None
    web_ssl: ssl.SSLContext | None = None
    keepalive_s: float = 15.0  # an SSE comment this often finds dead connections
    write_timeout_s: float = 30.0  # a browser that takes no bytes this long is dropped
    # After each write a browser's stream rests this long, so what changed meanwhile goes
    # out in one write: with many pumps that is one send per browser per rest instead of one
    # per message, at the price of at most this much added latency.
    batch_s: float = 0.025
    # The kernel's send buffer of each stream: small, so a browser that reads slowly falls
    # behind in the hub (where newer states replace older ones) rather than in a socket
    # buffer full of stale frames.
    send_buffer_bytes: int = 64 * 1024


class Dashboard:
    """Board + hub + broker feed + web app; `start()`/`stop()` or `async with`."""

    def __init__(self, config: DashboardConfig) -> None:
        self.config = config
        self.board = Board()
        self.hub = Hub()
        self.logins = Logins(config.login_password) \
            if config.remote_commands and config.login_password else None
        self.feed = BrokerFeed(config.target, config.layout, password=config.mqtt_password,
                               on_message=self._on_message, on_link=self._on_link)
        self._login_lock = asyncio.Lock()
        self._feed_task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- broker side ------------------------------------------------------------------------

    def _on_message(self, where: PumpTopic, payload: bytes) -> None:
        for key, view in self.board.apply(where, payload):
            pump = self.board.pumps[key]
            data = pump.run_view() if view == "run" else pump.live_view()
            self.hub.publish(f"{view}:{key}", sse_frame(view, data))

    def _broker_state(self) -> dict[str, Any]:
        return {"connected": self.feed.connected, "broker": self.config.target.display,
                "error": self.feed.last_error}

    def _on_link(self, up: bool, error: str) -> None:
        self.hub.publish("broker", sse_frame("broker", self._broker_state()))
        if not up:
            # Nothing the broker said before is current now; the page greys every card.
            log.debug("broker link down: %s", error)

    # -- lifecycle --------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_security_headers], client_max_size=64 * 1024)
        app.router.add_get("/", self.index)
        app.router.add_static("/static/", STATIC, show_index=False)
        app.router.add_get("/events", self.events)
        app.router.add_get("/api/pumps", self.pumps)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/api/session", self.session)
        app.router.add_post("/api/login", self.login)
        app.router.add_post("/api/logout", self.logout)
        app.router.add_post("/api/pumps/{site}/{pump_id}/{command}", self.command)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, app: web.Application) -> None:
        self.hub.close()  # ends every /events stream so shutdown does not wait for them

    async def start(self) -> str:
        """Subscribe and listen; returns the page's URL (the real port when 0 was asked)."""
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port,
                           ssl_context=self.config.web_ssl)
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            from pumpctl.errors import UsageError

            raise UsageError(f"--listen {self.config.host}:{self.config.port}: "
                             f"{exc.strerror or exc}") from None
        # Subscribe only once the page can be served: a port in use ends the command before
        # any broker connection exists.
        self._feed_task = asyncio.create_task(self.feed.run(), name="dashboard-broker")
        host, port = self._runner.addresses[0][:2]
        scheme = "https" if self.config.web_ssl else "http"
        shown = f"[{host}]" if ":" in host else host
        self.url = f"{scheme}://{shown}:{port}/"
        return self.url

    async def stop(self) -> None:
        self.hub.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._feed_task is not None:
            self._feed_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feed_task
            self._feed_task = None

    async def __aenter__(self) -> Dashboard:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- read-only endpoints ----------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    def _snapshot(self) -> dict[str, Any]:
        return {"broker": self._broker_state(), "commands": self.config.remote_commands,
                "pumps": self.board.pump_views()}

    async def pumps(self, request: web.Request) -> web.Response:
        return web.json_response(self._snapshot())

    async def healthz(self, request: web.Request) -> web.Response:
        body = {"status": "ok" if self.feed.connected else "broker unreachable",
                **self._broker_state(), "pumps": len(self.board.pumps),
                "messages": self.feed.messages, "rejected": self.board.rejected,
                **self.hub.stats()}
        return web.json_response(body, status=200 if self.feed.connected else 503)

    async def events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no"})
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                                self.config.send_buffer_bytes)
        await response.prepare(request)
        viewer = self.hub.join()  # joined before the snapshot is built: nothing falls between
        snapshot = sse_frame("snapshot", self._snapshot())
        try:
            frames: list[bytes] | None = [b"retry: 2000\n\n", snapshot]
            while frames is not None:
                async with asyncio.timeout(self.config.write_timeout_s):
                    await response.write(b"".join(frames) if frames else b": keep-alive\n\n")
                if self.config.batch_s > 0:
                    await asyncio.sleep(self.config.batch_s)
                frames = await viewer.take(self.config.keepalive_s)
        except (ConnectionError, TimeoutError) as exc:
            log.info("dropped browser %s: %s", request.remote, type(exc).__name__)
        finally:
            self.hub.leave(viewer)
        return response

    # -- login and commands -----------------------------------------------------------------

    def _check_origin(self, request: web.Request) -> None:
        """Refuse cross-site requests outright (the cookie is SameSite=Strict as well)."""
        origin = request.headers.get("Origin")
        if origin is not None and origin != str(request.url.origin()):
            raise web.HTTPForbidden(text="cross-origin request refused")
        fetch_site = request.headers.get("Sec-Fetch-Site")
        if fetch_site not in (None, "same-origin", "none"):
            raise web.HTTPForbidden(text="cross-site request refused")

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(text="send application/json")
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="body is not JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="body must be a JSON object")
        return body

    async def session(self, request: web.Request) -> web.Response:
        found = self.logins.find(request.cookies.get(COOKIE)) if self.logins else None
        return web.json_response({"commands": self.logins is not None,
                                  "logged_in": found is not None,
                                  "csrf": found.csrf if found else None},
                                 headers={"Cache-Control": "no-store"})

    async def login(self, request: web.Request) -> web.Response:
        if self.logins is None:
            raise web.HTTPNotFound(text="remote commands are off (--remote-commands)")
        self._check_origin(request)
        body = await self._json_body(request)
        attempt = body.get("password")
        if not isinstance(attempt, str) or len(attempt) > 1024:
            raise web.HTTPBadRequest(text="password: expected a string")
        async with self._login_lock:  # one guess at a time, each failure slowed down
            if not self.logins.check_password(attempt):
                await asyncio.sleep(LOGIN_DELAY_S)
                log.warning("failed dashboard login from %s", request.remote)
                raise web.HTTPUnauthorized(text="wrong password")
        token, session = self.logins.open(request.remote or "?")
        log.info("dashboard login from %s", request.remote)
        response = web.json_response({"logged_in": True, "csrf": session.csrf},
                                     headers={"Cache-Control": "no-store"})
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/",
                            secure=self.config.web_ssl is not None)
        return response

    async def logout(self, request: web.Request) -> web.Response:
        if self.logins is None:
            raise web.HTTPNotFound(text="remote commands are off (--remote-commands)")
        self._check_origin(request)
        token = request.cookies.get(COOKIE)
        session = self.logins.find(token)
        if session is not None and self.logins.csrf_ok(session, request.headers.get(CSRF_HEADER)):
            self.logins.close(token)
        response = web.json_response({"logged_in": False})
        response.del_cookie(COOKIE, path="/")
        return response

    async def command(self, request: web.Request) -> web.Response:
        """Publish stop or pause for one pump, for a logged-in browser, if its run takes them."""
        if self.logins is None:
            raise web.HTTPNotFound(text="remote commands are off (--remote-commands)")
        command = request.match_info["command"]
        if command not in COMMANDS:
            raise web.HTTPNotFound(text=f"{command!r}: only stop and pause can be sent")
        self._check_origin(request)
        session = self.logins.find(request.cookies.get(COOKIE))
        if session is None:
            raise web.HTTPUnauthorized(text="log in first")
        if not self.logins.csrf_ok(session, request.headers.get(CSRF_HEADER)):
            raise web.HTTPForbidden(text="missing or wrong CSRF token")
        body = await self._json_body(request)
        raw_reason = body.get("reason", "")
        if not isinstance(raw_reason, str):
            raise web.HTTPBadRequest(text="reason: expected a string")
        reason = _CONTROL.sub(" ", raw_reason).strip()[:200] or f"{command} from the dashboard"
        key = f"{request.match_info['site']}/{request.match_info['pump_id']}"
        pump = self.board.pumps.get(key)
        if pump is None:
            raise web.HTTPNotFound(text=f"no pump {key}")
        if not pump.accepts_commands():
            raise web.HTTPConflict(text=f"{key}: its run is not running, not online, or was "
                                        "not started with --remote-commands")
        try:
            topic = await self.feed.publish_command(pump.base, command, reason)
        except CommandError as exc:
            raise web.HTTPServiceUnavailable(text=str(exc)) from None
        log.warning("remote %s for %s published on %s from %s: %s", command, key, topic,
                    request.remote, reason)
        return web.json_response({"published": True, "command": command, "topic": topic,
                                  "reason": reason}, status=202)


@web.middleware
async def _security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    if not response.prepared:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
    return response
