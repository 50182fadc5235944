"""Remote stop/pause over TLS with password auth and an ACL, against a real Mosquitto."""

from __future__ import annotations

import asyncio
import getpass
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from pumpctl.telemetry.remote import MAX_READ_BYTES, RemoteCommands
from pumpctl.telemetry.runtime import TelemetrySink, telemetry_for_run
from pumpctl.telemetry.topics import Topics
from tests.telemetry.broker import AuthFiles, Mosquitto, TlsFiles, free_port
from tests.telemetry.conftest import EXAMPLE_ACL, USERS
from tests.telemetry.synthetic import SyntheticRun

CMD = "pumpctl/lab/p1/cmd"


class FakeHooks:
    """Stands in for InfusionController's request_stop/request_pause."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.changed = asyncio.Event()

    def request_pause(self, reason: str, sender: str) -> None:
        self.calls.append(("pause", reason, sender))
        self.changed.set()

    def request_stop(self, reason: str, sender: str) -> None:
        self.calls.append(("stop", reason, sender))
        self.changed.set()

    async def wait_calls(self, n: int) -> None:
        while len(self.calls) < n:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 10)


def tls(files: TlsFiles) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(files.ca))


def as_user(broker: Mosquitto, files: TlsFiles, user: str | None,
            password: str | None = None) -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", broker.port, username=user,
                          password=password if password is not None else USERS.get(user or ""),
                          tls_context=tls(files), timeout=10)


@asynccontextmanager
async def pump_with_commands(broker: Mosquitto, files: TlsFiles, tmp_path: Path,
                             hooks: FakeHooks, notes: list[dict[str, Any]],
                             ) -> AsyncIterator[TelemetrySink]:
    url = f"mqtts://pump@127.0.0.1:{broker.port}?ca={files.ca}"
    async with telemetry_for_run(url, site="lab", pump_id="p1", password=USERS["pump"],
                                 remote_commands=True, controller_hooks=hooks,
                                 journal_note=notes.append, spool_dir=tmp_path / "spool") as sink:
        await asyncio.wait_for(sink.link.connected.wait(), 10)
        yield sink


async def test_only_stop_and_pause_are_obeyed_and_everything_is_journaled(
        secure_broker: Mosquitto, tls_files: TlsFiles, tmp_path: Path) -> None:
    hooks, notes = FakeHooks(), list[dict[str, Any]]()
    async with pump_with_commands(secure_broker, tls_files, tmp_path, hooks, notes), \
            as_user(secure_broker, tls_files, "alice") as alice, \
            as_user(secure_broker, tls_files, "bob") as bob:
        await alice.publish(f"{CMD}/alice", json.dumps({"command": "pause",
                                                        "reason": "check the line"}), qos=1)
        await hooks.wait_calls(1)
        await alice.publish(f"{CMD}/alice", json.dumps({"command": "start"}), qos=1)
        await alice.publish(f"{CMD}/alice", json.dumps({"command": "set_rate",
                                                        "rate_ml_h": 500}), qos=1)
        await bob.publish(f"{CMD}/bob", json.dumps({"command": "stop"}), qos=1)
        await hooks.wait_calls(2)

    assert hooks.calls == [("pause", "check the line", "mqtt:alice"),
                           ("stop", "remote stop", "mqtt:bob")]
    assert notes == [
        {"type": "command", "op": "remote_command", "sender": "mqtt:alice",
         "args": {"command": "pause", "reason": "check the line"}, "result": "accepted"},
        {"type": "command", "op": "remote_command", "sender": "mqtt:alice",
         "args": {"command": "start", "reason": ""},
         "error": "refused: only stop and pause are accepted"},
        {"type": "command", "op": "remote_command", "sender": "mqtt:alice",
         "args": {"command": "set_rate", "reason": ""},
         "error": "refused: only stop and pause are accepted",
         "notes": ["unknown keys: 'rate_ml_h'"]},
        {"type": "command", "op": "remote_command", "sender": "mqtt:bob",
         "args": {"command": "stop", "reason": ""}, "result": "accepted"},
    ]


async def test_the_acl_keeps_out_viewers_and_impostors(
        secure_broker: Mosquitto, tls_files: TlsFiles, tmp_path: Path) -> None:
    hooks, notes = FakeHooks(), list[dict[str, Any]]()
    async with pump_with_commands(secure_broker, tls_files, tmp_path, hooks, notes), \
            as_user(secure_broker, tls_files, "dashboard") as viewer, \
            as_user(secure_broker, tls_files, "bob") as bob:
        stop = json.dumps({"command": "stop"})
        await viewer.publish(f"{CMD}/dashboard", stop, qos=1)  # may read, may not command
        await bob.publish(f"{CMD}/alice", stop, qos=1)  # may not speak for alice
        await bob.publish(f"{CMD}/bob", json.dumps({"command": "pause"}), qos=1)  # barrier
        await hooks.wait_calls(1)
    # Only bob's own, properly addressed command got through.
    assert hooks.calls == [("pause", "remote pause", "mqtt:bob")]
    assert [n["sender"] for n in notes] == ["mqtt:bob"]


async def test_without_credentials_a_client_can_neither_read_nor_command(
        secure_broker: Mosquitto, tls_files: TlsFiles) -> None:
    for user, password in ((None, None), ("alice", "wrong"), ("mallory", "guess")):
        client = as_user(secure_broker, tls_files, user, password)
        with pytest.raises(aiomqtt.MqttCodeError) as info:
            async with client:
                pass
        assert "authori" in str(info.value).lower()  # CONNACK: not authorised
    # Plain MQTT on the TLS port does not get a session either.
    plain = aiomqtt.Client("127.0.0.1", secure_broker.port, username="alice",
                           password=USERS["alice"], timeout=1)
    with pytest.raises(aiomqtt.MqttError):
        async with plain:
            pass
    # A certificate from elsewhere is refused by the client before any password is sent.
    untrusting = aiomqtt.Client("127.0.0.1", secure_broker.port, username="alice",
                                password=USERS["alice"],
                                tls_context=ssl.create_default_context(), timeout=3)
    with pytest.raises(aiomqtt.MqttError, match="CERTIFICATE_VERIFY_FAILED"):
        async with untrusting:
            pass


async def test_viewer_reads_what_the_pump_publishes(
        secure_broker: Mosquitto, tls_files: TlsFiles, tmp_path: Path) -> None:
    hooks, notes = FakeHooks(), list[dict[str, Any]]()
    async with pump_with_commands(secure_broker, tls_files, tmp_path, hooks, notes), \
            as_user(secure_broker, tls_files, "dashboard") as viewer:
        await viewer.subscribe("pumpctl/lab/p1/status", qos=1)
        message = await asyncio.wait_for(anext(aiter(viewer.messages)), 10)
        assert (message.payload, message.retain) == (b"online", True)


async def test_junk_on_the_command_topic_is_ignored_with_a_log_line(
        secure_broker: Mosquitto, tls_files: TlsFiles, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    hooks, notes = FakeHooks(), list[dict[str, Any]]()
    caplog.set_level("WARNING", logger="pumpctl.telemetry.remote")
    topic = f"{CMD}/alice"
    async with as_user(secure_broker, tls_files, "alice") as alice:
        # Left behind as retained: it would stop every future run at connect if obeyed.
        await alice.publish(topic, json.dumps({"command": "stop"}), qos=1, retain=True)
        async with pump_with_commands(secure_broker, tls_files, tmp_path, hooks, notes):
            await alice.publish(topic, b"stop now!", qos=1)
            await alice.publish(topic, b"\xff\xfe", qos=1)
            await alice.publish(topic, json.dumps(["stop"]), qos=1)
            await alice.publish(topic, json.dumps({"command": None, "reason": "stop"}), qos=1)
            await alice.publish(topic, json.dumps({"command": "stop",
                                                   "pad": "x" * MAX_READ_BYTES}), qos=1)
            await alice.publish(topic, json.dumps({"command": "pause"}), qos=1)  # barrier
            await hooks.wait_calls(1)
        await alice.publish(topic, b"", qos=1, retain=True)  # clears the retained message
    assert hooks.calls == [("pause", "remote pause", "mqtt:alice")]
    assert len(notes) == 1  # junk cannot be attributed to anyone, so it is not journaled
    text = caplog.text
    assert "retained command on 'pumpctl/lab/p1/cmd/alice' from mqtt:alice" in text
    assert text.count("malformed command from mqtt:alice: not JSON (Expecting value") == 2
    assert text.count('expected {"command": "stop"|"pause"}') == 2
    assert f"bytes, limit {MAX_READ_BYTES} (not read)" in text


def test_handler_ignores_foreign_topics(caplog: pytest.LogCaptureFixture) -> None:
    hooks = FakeHooks()
    notes: list[dict[str, Any]] = []
    remote = RemoteCommands(Topics.for_pump("lab", "p1"), hooks, notes.append)
    stop = json.dumps({"command": "stop"}).encode()
    assert remote.handle("pumpctl/lab/p2/cmd/alice", stop, retained=False) is None
    assert remote.handle("pumpctl/lab/p1/cmd/alice/x", stop, retained=False) is None
    assert remote.handle("pumpctl/lab/p1/cmd", stop, retained=False) is None
    assert "unexpected topic 'pumpctl/lab/p2/cmd/alice'" in caplog.text
    assert hooks.calls == [] and notes == [] and remote.ignored == 3


async def test_the_example_lab_broker_config_works(
        tmp_path: Path, tls_files: TlsFiles, auth_files: AuthFiles) -> None:
    """configs/mosquitto/pumpctl-lab.conf, with only paths and ports swapped for test ones."""
    text = (EXAMPLE_ACL.parent / "pumpctl-lab.conf").read_text()
    tls_port, plain_port = free_port(), free_port()
    swaps = {
        "listener 8883": f"listener {tls_port} 127.0.0.1",
        "listener 1883 127.0.0.1": f"listener {plain_port} 127.0.0.1",
        "/etc/mosquitto/certs/lab-ca.pem": str(tls_files.ca),
        "/etc/mosquitto/certs/broker.pem": str(tls_files.cert),
        "/etc/mosquitto/certs/broker.key": str(tls_files.key),
        "/etc/mosquitto/pumpctl.passwd": str(auth_files.password_file),
        "/etc/mosquitto/pumpctl.acl": str(auth_files.acl_file),
        "/var/lib/mosquitto/": f"{tmp_path}/",
        "log_dest syslog": "log_dest stderr\nlog_type information",
    }
    for old, new in swaps.items():
        assert old in text, old
        text = text.replace(old, new)
    broker = Mosquitto(tmp_path, port=tls_port, raw_conf=f"user {getpass.getuser()}\n{text}")
    broker.start()
    try:
        async with as_user(broker, tls_files, "pump") as pump:
            await pump.publish("pumpctl/lab/p1/status", b"online", qos=1, retain=True)
        local = aiomqtt.Client("127.0.0.1", plain_port, username="dashboard",
                               password=USERS["dashboard"], timeout=10)
        async with local:
            await local.subscribe("pumpctl/#", qos=1)
            message = await asyncio.wait_for(anext(aiter(local.messages)), 10)
            assert (message.topic.value, message.payload) == ("pumpctl/lab/p1/status", b"online")
        with pytest.raises(aiomqtt.MqttCodeError):
            async with aiomqtt.Client("127.0.0.1", plain_port, timeout=10):
                pass
    finally:
        broker.stop()


async def test_remote_commands_are_off_unless_asked_for(
        broker: Mosquitto, tmp_path: Path) -> None:
    hooks = FakeHooks()
    subscribed = {}
    for enabled, url in ((False, broker.url), (True, f"mqtt://pump@127.0.0.1:{broker.port}")):
        async with telemetry_for_run(url, site="lab", pump_id="p1", controller_hooks=hooks,
                                     remote_commands=enabled,
                                     spool_dir=tmp_path / f"spool-{enabled}") as sink:
            await asyncio.wait_for(sink.link.connected.wait(), 10)  # set after subscribing
            client_id = sink.link.client_id
        subscribed[enabled] = any(line.endswith(f"{client_id} 1 pumpctl/lab/p1/cmd/+")
                                  for line in broker.log)
    assert subscribed == {False: False, True: True}


async def test_the_password_goes_nowhere_but_the_broker(
        secure_broker: Mosquitto, tls_files: TlsFiles, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")  # everything: pumpctl, aiomqtt, paho
    caplog.set_level("DEBUG", logger="mqtt")  # aiomqtt's and paho's own logger
    hooks, notes = FakeHooks(), list[dict[str, Any]]()
    async with pump_with_commands(secure_broker, tls_files, tmp_path, hooks, notes) as sink, \
            as_user(secure_broker, tls_files, "alice") as alice:
        sink.emit(SyntheticRun(samples=1).script()[0][1])
        await alice.publish(f"{CMD}/alice", json.dumps({"command": "start"}), qos=1)
        await alice.publish(f"{CMD}/alice", json.dumps({"command": "pause"}), qos=1)
        await hooks.wait_calls(1)
    assert len(notes) == 2
    secret = USERS["pump"]
    assert "Sending CONNECT" in caplog.text  # the connection was logged ...
    assert secret not in caplog.text  # ... without the password
    assert secret not in json.dumps(notes) and secret not in json.dumps(sink.summary())
    assert all(secret not in f.read_text() for f in (tmp_path / "spool").iterdir()
               if f.is_file())

