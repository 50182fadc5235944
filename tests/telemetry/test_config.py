"""Broker URLs, passwords, topic names and run options: good ones parse, bad ones say why."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pumpctl.errors import PumpctlError
from pumpctl.telemetry.errors import TelemetryError
from pumpctl.telemetry.runtime import telemetry_for_run, telemetry_sink_factory
from pumpctl.telemetry.topics import Topics
from pumpctl.telemetry.urls import PASSWORD_ENV, parse_mqtt_url, read_password


def test_plain_and_tls_urls() -> None:
    plain = parse_mqtt_url("mqtt://broker.lab")
    assert (plain.host, plain.port, plain.tls, plain.username) == ("broker.lab", 1883, False, None)
    tls = parse_mqtt_url("mqtts://alice@broker.lab?ca=/etc/lab-ca.pem&client_id=rig-3")
    assert (tls.port, tls.tls, tls.username, tls.client_id) == (8883, True, "alice", "rig-3")
    assert tls.ca_file == Path("/etc/lab-ca.pem")
    assert tls.display == "mqtts://alice@broker.lab:8883"
    custom = parse_mqtt_url("mqtt://127.0.0.1:18830?prefix=labs/{site}/{pump_id}&keepalive=30")
    assert (custom.port, custom.prefix, custom.keepalive_s) == (18830, "labs/{site}/{pump_id}", 30)
    assert parse_mqtt_url("mqtt://[::1]:1884").display == "mqtt://[::1]:1884"
    assert parse_mqtt_url("mqtt://user%40lab@h").username == "user@lab"


@pytest.mark.parametrize(("url", "fragment"), [
    ("http://broker", "'http' is not mqtt:// or mqtts://"),
    ("broker:1883", "is not mqtt:// or mqtts://"),
    ("mqtt://alice:hunter2@broker", "contains a password"),
    ("mqtt://broker:70000", "port must be 1..65535"),
    ("mqtt://broker:0", "port 0 is out of range"),
    ("mqtt://:1883", "no host name"),
    ("mqtt://broker/pumps", "unexpected path '/pumps'"),
    ("mqtt://broker?qos=2", "?qos=: unknown option"),
    ("mqtt://broker?ca=/x.pem", "?ca= needs an mqtts:// URL"),
    ("mqtts://broker?key=/k.pem", "?key= given without ?cert="),
    ("mqtt://broker?keepalive=2", "?keepalive=2: outside 5..3600 s"),
    ("mqtt://broker?keepalive=soon", "not a whole number"),
    ("mqtt://broker?client_id=" + "x" * 65, "length 65 not in 1..64"),
    ("mqtt://broker?prefix=a&prefix=b", "exactly one non-empty value"),
])
def test_bad_urls_name_the_problem(url: str, fragment: str) -> None:
    with pytest.raises(TelemetryError) as info:
        parse_mqtt_url(url)
    message = str(info.value)
    assert fragment in message and "\n" not in message
    assert "hunter2" not in message
    assert info.value.exit_code == 2


@given(st.text(min_size=1, max_size=40))
def test_any_text_either_parses_or_raises_a_telemetry_error(text: str) -> None:
    try:
        target = parse_mqtt_url(text)
    except TelemetryError as exc:
        assert "\n" not in str(exc)
    else:
        assert 1 <= target.port <= 65535 and target.host


def test_password_from_file_wins_over_environment(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt.pw"
    secret.write_text("from-file\nignored second line\n")
    assert read_password(secret, {PASSWORD_ENV: "from-env"}) == "from-file"
    assert read_password(None, {PASSWORD_ENV: "from-env"}) == "from-env"
    assert read_password(None, {}) is None
    assert read_password(None, {PASSWORD_ENV: ""}) is None


def test_password_file_problems(tmp_path: Path) -> None:
    with pytest.raises(TelemetryError, match=r"mqtt-password-file .*missing.pw: file not found"):
        read_password(tmp_path / "missing.pw")
    empty = tmp_path / "empty.pw"
    empty.write_text("\n")
    with pytest.raises(TelemetryError, match="first line is empty"):
        read_password(empty)


def test_missing_tls_file_is_reported_before_connecting(tmp_path: Path) -> None:
    target = parse_mqtt_url(f"mqtts://u@h?ca={tmp_path / 'nope.pem'}")
    with pytest.raises(TelemetryError, match=r"\?ca=.*nope.pem: file not found"):
        target.ssl_context()


def test_topics_layout_and_command_senders() -> None:
    topics = Topics.for_pump("lab-2", "pump0")
    assert topics.telemetry == "pumpctl/lab-2/pump0/telemetry"
    assert (topics.status, topics.event, topics.run) == (
        "pumpctl/lab-2/pump0/status", "pumpctl/lab-2/pump0/event", "pumpctl/lab-2/pump0/run")
    assert topics.cmd_filter == "pumpctl/lab-2/pump0/cmd/+"
    assert topics.cmd_sender("pumpctl/lab-2/pump0/cmd/alice") == "alice"
    assert topics.cmd_sender("pumpctl/lab-2/pump0/cmd") is None
    assert topics.cmd_sender("pumpctl/lab-2/pump0/cmd/alice/extra") is None
    assert topics.cmd_sender("pumpctl/lab-2/pump1/cmd/alice") is None
    assert Topics.for_pump("a", "b", "x/{site}/y/{pump_id}/").base == "x/a/y/b"


@pytest.mark.parametrize(("site", "pump", "template", "fragment"), [
    ("lab/2", "p", None, "--site 'lab/2'"),
    ("lab", "p#", None, "--pump-id 'p#'"),
    ("lab", "", None, "--pump-id ''"),
    ("lab", "p", "x/+/{pump_id}", "without +, #"),
    ("lab", "p", "x/{room}", "bad placeholder 'room'"),
])
def test_bad_topic_names(site: str, pump: str, template: str | None, fragment: str) -> None:
    with pytest.raises(TelemetryError, match=None) as info:
        Topics.for_pump(site, pump, template)
    assert fragment in str(info.value)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"telemetry_qos": 2}, "--telemetry-qos 2: must be 0 or 1"),
    ({"remote_commands": True}, "--remote-commands needs the controller"),
    ({"remote_commands": True, "controller_hooks": object()}, "needs an authenticated"),
    ({"site": "a b"}, "--site 'a b'"),
])
async def test_run_options_are_checked_before_anything_starts(
        tmp_path: Path, kwargs: dict[str, object], fragment: str) -> None:
    options: dict[str, object] = {"site": "lab", "pump_id": "p1", "spool_dir": tmp_path / "s"}
    options.update(kwargs)
    with pytest.raises(PumpctlError) as info:
        async with telemetry_for_run("mqtt://127.0.0.1:9", **options):  # type: ignore[arg-type]
            pass
    assert fragment in str(info.value)
    assert not (tmp_path / "s").exists()  # failed before touching the spool


@pytest.mark.parametrize(("url", "kwargs", "fragment"), [
    ("mqtt://h", {"telemetry_qos": 5}, "--telemetry-qos 5"),
    ("mqtt://h:99999", {}, "port must be 1..65535"),
    ("mqtt://h", {"site": "a b"}, "--site 'a b'"),
    ("mqtt://h", {"pump_id": "p/1"}, "--pump-id 'p/1'"),
    ("mqtt://h", {"remote_commands": True}, "needs an authenticated connection"),
    ("mqtts://u@h?ca=/nonexistent/ca.pem", {}, "?ca=/nonexistent/ca.pem: file not found"),
    ("mqtt://h", {"password_file": Path("/nonexistent/pw")}, "file not found"),
])
def test_the_run_factory_checks_everything_before_a_pump_moves(
        tmp_path: Path, url: str, kwargs: dict[str, object], fragment: str) -> None:
    options: dict[str, object] = {"site": "lab", "spool_root": tmp_path}
    options.update(kwargs)
    with pytest.raises(TelemetryError) as info:
        telemetry_sink_factory(url, **options)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_the_run_factory_reads_the_password_from_the_environment(tmp_path: Path) -> None:
    factory = telemetry_sink_factory("mqtt://u@h", site="lab", spool_root=tmp_path,
                                     environ={PASSWORD_ENV: "s3cret"})
    assert callable(factory)
