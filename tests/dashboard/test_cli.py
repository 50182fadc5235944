"""`pumpctl dashboard` as a user runs it: bad options fail in one line, SIGTERM ends it cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from pumpctl.cli import main
from pumpctl.commands.dashboard import is_loopback, parse_listen
from pumpctl.errors import UsageError
from tests.dashboard.browser import PUMPCTL, dashboard
from tests.telemetry.broker import Mosquitto


@pytest.mark.parametrize(("args", "env", "needle"), [
    (["--listen", "8080"], {}, "HOST:PORT"),
    (["--listen", "127.0.0.1:99999"], {}, "99999"),
    (["--mqtt", "http://127.0.0.1"], {}, "http"),
    (["--mqtt", "mqtt://u:secret@127.0.0.1"], {}, "password"),
    (["--mqtt", "mqtt://127.0.0.1/?prefix=labs/{site}"], {}, "{pump_id}"),
    (["--site", "lab one"], {}, "--site"),
    (["--remote-commands"], {"PUMPCTL_DASHBOARD_PASSWORD": "long enough"}, "user in --mqtt"),
    (["--remote-commands", "--mqtt", "mqtt://alice@127.0.0.1"], {}, "login password"),
    (["--remote-commands", "--mqtt", "mqtt://alice@127.0.0.1", "--listen", "0.0.0.0:8080"],
     {"PUMPCTL_DASHBOARD_PASSWORD": "long enough"}, "--tls-cert"),
    (["--login-password-file", "/nonexistent/login"], {}, "file not found"),
    ([], {"PUMPCTL_DASHBOARD_PASSWORD": "short"}, "at least 8"),
    (["--tls-key", "/tmp/x.key"], {}, "--tls-cert"),
])
def test_bad_options_are_one_line_and_exit_2(
        args: list[str], env: dict[str, str], needle: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("PUMPCTL_DASHBOARD_PASSWORD", "PUMPCTL_MQTT_PASSWORD", "PUMPCTL_MQTT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["dashboard", *args])
    stderr = capsys.readouterr().err
    assert exited.value.code == 2, (args, stderr)
    assert needle in stderr and "Traceback" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert "secret" not in stderr


def test_a_bad_option_from_the_shell(tmp_path: Path) -> None:
    done = subprocess.run([*PUMPCTL, "dashboard", "--listen", "nowhere"], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2 and "HOST:PORT" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_listen_parsing() -> None:
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen("localhost:80") == ("localhost", 80)
    with pytest.raises(UsageError):
        parse_listen(":8080")
    assert is_loopback("127.0.0.5") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("lab-pc")


def test_port_in_use_is_a_clear_error(broker: Mosquitto) -> None:
    first, url = dashboard(broker.url)
    port = url.rsplit(":", 1)[1].strip("/")
    try:
        second = subprocess.run([*PUMPCTL, "dashboard", "--mqtt", broker.url, "--listen",
                                 f"127.0.0.1:{port}"], capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 2 and "--listen" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP],
                         ids=lambda s: signal.Signals(s).name)
def test_sigterm_or_a_closed_terminal_ends_the_dashboard_cleanly(broker: Mosquitto,
                                                                 sig: int) -> None:
    dash, url = dashboard(broker.url)
    try:
        with urllib.request.urlopen(f"{url}healthz", timeout=10) as r:
            assert json.load(r)["connected"] is True
        # A browser holding the live stream open must not keep the process alive.
        stream = urllib.request.urlopen(f"{url}events", timeout=10)
        dash.proc.send_signal(sig)
        assert dash.proc.wait(timeout=20) == 0
        stream.close()
        assert not any("Traceback" in line for line in dash.lines), dash.lines
    finally:
        dash.stop()
