"""Remote stop/pause from the page: login, CSRF, and the pump's own command handler at the end.

A real TLS broker with the example ACL; the pump side is `telemetry_for_run` with remote
commands on (the code `pumpctl run --remote-commands` uses), so a command accepted here is
one the run would act on, attributed to the dashboard's broker account.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pumpctl.dashboard.auth import COOKIE, Logins, read_login_password
from pumpctl.dashboard.server import Dashboard
from pumpctl.errors import UsageError
from pumpctl.telemetry.runtime import TelemetrySink, telemetry_for_run
from tests.dashboard.conftest import running_dashboard
from tests.telemetry.broker import Mosquitto, TlsFiles
from tests.telemetry.conftest import USERS
from tests.telemetry.synthetic import SyntheticRun

LOGIN = "correct horse battery"


class Hooks:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.changed = asyncio.Event()

    def request_pause(self, reason: str, sender: str) -> None:
        self.calls.append(("pause", reason, sender))
        self.changed.set()

    def request_stop(self, reason: str, sender: str) -> None:
        self.calls.append(("stop", reason, sender))
        self.changed.set()


@asynccontextmanager
async def pump(broker: Mosquitto, files: TlsFiles, tmp_path: Path, hooks: Hooks, *,
               pump_id: str, remote: bool) -> AsyncIterator[TelemetrySink]:
    """A run's telemetry on `lab/<pump_id>`, its header (the retained run) already sent."""
    url = f"mqtts://pump@127.0.0.1:{broker.port}?ca={files.ca}"
    async with telemetry_for_run(url, site="lab", pump_id=pump_id, password=USERS["pump"],
                                 remote_commands=remote, controller_hooks=hooks,
                                 journal_note=lambda note: None,
                                 spool_dir=tmp_path / pump_id) as sink:
        header = SyntheticRun(run_id=f"run-{pump_id}").script()[0][1]
        sink.emit(header)
        await asyncio.wait_for(sink.link.connected.wait(), 10)
        await asyncio.wait_for(sink.spool.wait_empty(), 10)
        yield sink


@asynccontextmanager
async def operator_dashboard(broker: Mosquitto, files: TlsFiles,
                             **options: Any) -> AsyncIterator[Dashboard]:
    url = f"mqtts://alice@127.0.0.1:{broker.port}?ca={files.ca}"
    options.setdefault("remote_commands", True)
    options.setdefault("login_password", LOGIN)
    async with running_dashboard(url, mqtt_password=USERS["alice"], **options) as dash:
        yield dash


async def wait_accepting(dash: Dashboard, key: str, expected: bool = True) -> None:
    while (p := dash.board.pumps.get(key)) is None or p.accepts_commands() != expected:
        await asyncio.sleep(0.02)


def browser() -> aiohttp.ClientSession:
    """A client that keeps cookies for 127.0.0.1, as a browser does."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def login(http: aiohttp.ClientSession, dash: Dashboard, password: str = LOGIN
                ) -> tuple[int, dict[str, Any]]:
    async with http.post(dash.url + "api/login", json={"password": password}) as response:
        body = await response.json() if response.status == 200 else {}
        if response.status == 200:
            body["set-cookie"] = response.headers["Set-Cookie"]
        return response.status, body


async def send(http: aiohttp.ClientSession, dash: Dashboard, path: str, *,
               csrf: str | None, body: Any = None, **kwargs: Any) -> int:
    headers = kwargs.pop("headers", {})
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    async with http.post(dash.url + path, json=body if body is not None else {"reason": "x"},
                         headers=headers, **kwargs) as response:
        return response.status


async def test_logged_in_pause_reaches_the_run_as_the_dashboard_account(
        secure_broker: Mosquitto, tls_files: TlsFiles, tmp_path: Path) -> None:
    hooks = Hooks()
    async with pump(secure_broker, tls_files, tmp_path, hooks, pump_id="p1", remote=True), \
            operator_dashboard(secure_broker, tls_files) as dash, \
            browser() as http:
        await wait_accepting(dash, "lab/p1")
        path = "api/pumps/lab/p1/pause"
        assert await send(http, dash, path, csrf=None) == 401  # not logged in
        assert (await login(http, dash, "wrong password"))[0] == 401
        status, body = await login(http, dash)
        assert status == 200 and body["logged_in"] is True
        csrf = body["csrf"]
        cookie = body["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie and "Path=/" in cookie
        assert await send(http, dash, path, csrf=None) == 403  # no CSRF token
        assert await send(http, dash, path, csrf="forged") == 403
        assert await send(http, dash, path, csrf=csrf,
                          headers={"Origin": "http://evil.example"}) == 403
        assert await send(http, dash, path, csrf=csrf,
                          headers={"Sec-Fetch-Site": "cross-site"}) == 403
        async with http.post(dash.url + path, data="reason=x", headers={
                "X-CSRF-Token": csrf, "Content-Type": "application/x-www-form-urlencoded"}) as r:
            assert r.status == 415  # a plain HTML form from elsewhere cannot send JSON
        for forbidden in ("start", "resume", "rate"):
            assert await send(http, dash, f"api/pumps/lab/p1/{forbidden}", csrf=csrf) == 404
        assert await send(http, dash, "api/pumps/lab/nope/pause", csrf=csrf) == 404
        assert hooks.calls == []  # nothing so far reached the pump

        assert await send(http, dash, path, csrf=csrf,
                          body={"reason": "line\ncheck\x00 please"}) == 202
        await asyncio.wait_for(hooks.changed.wait(), 10)
        assert hooks.calls == [("pause", "line check  please", "mqtt:alice")]

        async with http.get(dash.url + "api/session") as response:
            assert (await response.json())["logged_in"] is True
        assert await send(http, dash, "api/logout", csrf=csrf, body={}) == 200
        assert await send(http, dash, path, csrf=csrf) == 401


async def test_buttons_only_for_runs_that_take_commands_and_are_connected(
        secure_broker: Mosquitto, tls_files: TlsFiles, tmp_path: Path) -> None:
    hooks = Hooks()
    async with pump(secure_broker, tls_files, tmp_path, hooks, pump_id="plain", remote=False), \
            operator_dashboard(secure_broker, tls_files) as dash, \
            browser() as http:
        await wait_accepting(dash, "lab/plain", expected=False)
        while (dash.board.pumps["lab/plain"].run or {}).get("run_state") != "running":
            await asyncio.sleep(0.02)
        _, body = await login(http, dash)
        assert await send(http, dash, "api/pumps/lab/plain/stop", csrf=body["csrf"]) == 409
        async with http.get(dash.url + "api/pumps") as response:
            (card,) = (await response.json())["pumps"]
        assert card["accepts_commands"] is False and card["run"]["remote_commands"] is False
    assert hooks.calls == []


async def test_read_only_dashboard_has_no_login_and_no_commands(broker: Mosquitto) -> None:
    async with running_dashboard(broker.url) as dash, browser() as http:
        assert (await login(http, dash))[0] == 404
        assert await send(http, dash, "api/pumps/lab/p1/stop", csrf="x") == 404
        async with http.get(dash.url + "api/session") as response:
            assert await response.json() == {"commands": False, "logged_in": False,
                                              "csrf": None}


def test_sessions_expire_and_only_token_hashes_are_kept() -> None:
    now = [1000.0]
    logins = Logins("a long password", ttl_s=60, clock=lambda: now[0])
    token, session = logins.open("127.0.0.1")
    assert logins.find(token) is session
    assert token not in repr(logins.__dict__)  # a memory dump does not show live tokens
    assert logins.csrf_ok(session, session.csrf) and not logins.csrf_ok(session, None)
    now[0] += 61
    assert logins.find(token) is None and logins.active == 0
    assert not logins.check_password("a long passwor") and logins.failures == 1


def test_login_password_sources(tmp_path: Path) -> None:
    secret = tmp_path / "login"
    secret.write_text("from the file\nignored\n")
    env = {"PUMPCTL_DASHBOARD_PASSWORD": "from the environment"}
    assert read_login_password(secret, env) == "from the file"
    assert read_login_password(None, env) == "from the environment"
    assert read_login_password(None, {}) is None
    with pytest.raises(UsageError, match="at least 8"):
        read_login_password(None, {"PUMPCTL_DASHBOARD_PASSWORD": "short"})
    with pytest.raises(UsageError, match="file not found"):
        read_login_password(tmp_path / "missing", env)


def test_command_payload_is_what_the_run_expects() -> None:
    # The same shape docs/telemetry.md gives and RemoteCommandPayload validates.
    from pumpctl.telemetry.schema import RemoteCommandPayload

    body = json.loads(json.dumps({"command": "stop", "reason": "stop from the dashboard"}))
    assert RemoteCommandPayload.model_validate(body).command == "stop"
