"""Fixtures: real Mosquitto brokers on free loopback ports, a test CA, users and an ACL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.telemetry.broker import (
    MOSQUITTO,
    MOSQUITTO_PASSWD,
    MOSQUITTO_SUB,
    OPENSSL,
    AuthFiles,
    Mosquitto,
    TlsFiles,
    make_auth,
    make_test_ca,
)

# Every tool the fixtures need must be there: a missing broker is a broken setup, not a skip.
assert MOSQUITTO and MOSQUITTO_SUB and MOSQUITTO_PASSWD, "install mosquitto and mosquitto-clients"

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_ACL = REPO / "configs" / "mosquitto" / "pumpctl.acl"

# The accounts of the example ACL (the tests use that very file): the pump publishes under
# pumpctl/ and reads its command topics; alice and bob are operators who may each write only
# their own sender level; dashboard may only read.
USERS = {"pump": "pump-secret", "alice": "alice-secret", "bob": "bob-secret",
         "dashboard": "dashboard-secret"}


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    started: list[Mosquitto] = []

    def make(name: str = "broker", **kwargs: Any) -> Mosquitto:
        broker = Mosquitto(tmp_path / name, **kwargs)
        started.append(broker)
        return broker.start()

    yield make
    for broker in started:
        broker.stop()


@pytest.fixture
def broker(broker_factory: Callable[..., Mosquitto]) -> Mosquitto:
    return broker_factory()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    assert OPENSSL, "openssl is needed to make the test CA"
    return make_test_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def auth_files(tmp_path_factory: pytest.TempPathFactory) -> AuthFiles:
    return make_auth(tmp_path_factory.mktemp("auth"), USERS, EXAMPLE_ACL.read_text())


@pytest.fixture
def secure_broker(broker_factory: Callable[..., Mosquitto], tls_files: TlsFiles,
                  auth_files: AuthFiles) -> Mosquitto:
    return broker_factory("secure", tls=tls_files, auth=auth_files)


class Collector:
    """An independent subscriber in the test's own loop, recording everything it receives.

    Its MQTT operations have no timeout of their own: on a virtual-time loop any timeout
    would run out in simulated seconds while the broker answers in real ones (pytest-timeout
    is the backstop)."""

    def __init__(self, broker: Mosquitto, topics: tuple[str, ...] = ("pumpctl/#",), *,
                 qos: int = 1, **client_kwargs: Any) -> None:
        self.broker = broker
        self.topics = topics
        self.qos = qos
        self.client_kwargs = client_kwargs
        self.messages: list[aiomqtt.Message] = []
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._client: aiomqtt.Client | None = None

    async def __aenter__(self) -> Collector:
        self._client = aiomqtt.Client("127.0.0.1", self.broker.port, timeout=math.inf,
                                      **self.client_kwargs)
        await self._client.__aenter__()
        for topic in self.topics:
            await self._client.subscribe(topic, qos=self.qos)
        self._task = asyncio.create_task(self._read(self._client))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await self._client.__aexit__(None, None, None)

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            async with self._changed:
                self.messages.append(message)
                self._changed.notify_all()

    def on(self, suffix: str) -> list[aiomqtt.Message]:
        return [m for m in self.messages if m.topic.value.endswith("/" + suffix)]

    def last_seq(self) -> int | None:
        """`seq` of the newest JSON message received (status messages carry none)."""
        for message in reversed(self.messages):
            if not message.topic.value.endswith("/status"):
                return int(json.loads(message.payload)["seq"])
        return None

    def json_on(self, suffix: str) -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in self.on(suffix)]

    async def wait_for(self, predicate: Callable[[Collector], bool],
                       timeout: float | None = None) -> None:
        """Wait until `predicate(self)` holds. A timeout counts loop seconds, which are
        simulated under a virtual-time loop: leave it None there (pytest-timeout is the
        backstop)."""
        async def until() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self))

        if timeout is None:
            await until()
        else:
            await asyncio.wait_for(until(), timeout)


@pytest.fixture
def collector_factory() -> Callable[..., Collector]:
    return Collector


class ReconnectingCollector(Collector):
    """A persistent-session subscriber (clean_session off) that reconnects after a broker
    restart, so QoS 1 messages published while it was away are delivered to it afterwards."""

    def __init__(self, broker: Mosquitto, client_id: str = "watcher",
                 topics: tuple[str, ...] = ("pumpctl/#",)) -> None:
        super().__init__(broker, topics, qos=1, identifier=client_id, clean_session=False)
        self.sessions = 0

    async def __aenter__(self) -> Collector:
        self._task = asyncio.create_task(self._loop())
        await self.wait_for(lambda c: self.sessions > 0, timeout=None)
        return self

    async def _loop(self) -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.broker.port, timeout=math.inf,
                                          **self.client_kwargs) as client:
                    for topic in self.topics:
                        await client.subscribe(topic, qos=self.qos)
                    async with self._changed:
                        self.sessions += 1
                        self._changed.notify_all()
                    await self._read(client)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)  # broker away: retry (virtual seconds under a VTL)


def prepare_session(broker: Mosquitto, client_id: str = "watcher",
                    topics: tuple[str, ...] = ("pumpctl/#",)) -> None:
    """Register a persistent subscription for `client_id` and make the broker save it, so the
    broker queues messages for that subscriber even after being killed and restarted."""
    async def subscribe_once() -> None:
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier=client_id,
                                  clean_session=False) as client:
            for topic in topics:
                await client.subscribe(topic, qos=1)

    asyncio.run(subscribe_once())
    broker.save_db()
