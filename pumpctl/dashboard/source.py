"""The dashboard's one broker connection: subscribe to every pump, publish remote commands.

However many browsers are watching, the broker sees one client with four subscriptions
(status, run, event, telemetry under the prefix template). Retained `status` and `run`
messages arrive first on every (re)connect, so the board is complete within a moment of
starting, and again after the broker comes back. While the broker is away the page says so:
every figure on it may be stale, and offline pumps cannot be told from a lost broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
from collections.abc import Callable

import aiomqtt

from pumpctl.dashboard.layout import PumpTopic, TopicLayout
from pumpctl.telemetry.errors import TelemetryError
from pumpctl.telemetry.urls import MqttTarget

log = logging.getLogger("pumpctl.dashboard.source")

Handler = Callable[[PumpTopic, bytes], None]


class CommandError(Exception):
    """A remote command could not be published (broker away, or it refused)."""


class BrokerFeed:
    """Keeps the subscription up (reconnecting with capped backoff) and hands every pump
    message to `on_message`; `on_link` is told when the connection comes and goes."""

    def __init__(self, target: MqttTarget, layout: TopicLayout, *, password: str | None,
                 on_message: Handler, on_link: Callable[[bool, str], None],
                 backoff_s: tuple[float, float] = (0.5, 10.0)) -> None:
        self.target = target
        self.layout = layout
        self._password = password
        self._tls = target.ssl_context()
        self._on_message = on_message
        self._on_link = on_link
        self._backoff = backoff_s
        self._client: aiomqtt.Client | None = None
        self.connected = False
        self.ready = asyncio.Event()  # set while subscribed
        self.last_error = ""
        self.messages = 0
        self.connects = 0

    def _new_client(self) -> aiomqtt.Client:
        client_id = self.target.client_id or \
            f"pumpctl-dashboard-{os.getpid()}-{secrets.token_hex(3)}"
        return aiomqtt.Client(self.target.host, self.target.port,
                              username=self.target.username, password=self._password,
                              identifier=client_id[:64], keepalive=self.target.keepalive_s,
                              tls_context=self._tls, timeout=10)

    async def run(self) -> None:
        """Until cancelled."""
        delay = self._backoff[0]
        while True:
            try:
                async with self._new_client() as client:
                    for topic_filter in self.layout.filters:
                        await client.subscribe(topic_filter, qos=1)
                    self._client = client
                    self.connected = True
                    self.ready.set()
                    self.connects += 1
                    delay = self._backoff[0]
                    log.info("dashboard subscribed at %s: %s", self.target.display,
                             ", ".join(self.layout.filters))
                    self._on_link(True, "")
                    async for message in client.messages:
                        self._deliver(message)
            except aiomqtt.MqttError as exc:
                self.last_error = str(exc) or type(exc).__name__
            finally:
                was_connected, self.connected, self._client = self.connected, False, None
                self.ready.clear()
            if was_connected:
                log.warning("dashboard lost the broker %s (%s); reconnecting",
                            self.target.display, self.last_error)
            self._on_link(False, self.last_error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff[1])

    def _deliver(self, message: aiomqtt.Message) -> None:
        self.messages += 1
        where = self.layout.parse(message.topic.value)
        if where is None:
            return
        payload = message.payload if isinstance(message.payload, bytes) else b""
        try:
            self._on_message(where, payload)
        except Exception:  # one bad message must not drop the subscription for everyone
            log.exception("dashboard could not fold in a message on %s", message.topic.value)

    async def publish_command(self, base: str, command: str, reason: str) -> str:
        """Publish `{"command", "reason"}` to `<base>/cmd/<our user>` (QoS 1, not retained:
        a retained stop would fire at every later connect); returns the topic."""
        client = self._client
        if client is None:
            raise CommandError(f"not connected to the broker {self.target.display}")
        user = self.target.username
        if user is None:
            raise TelemetryError("remote commands need a user in --mqtt")
        topic = self.layout.command_topic(base, user)
        body = json.dumps({"command": command, "reason": reason}).encode()
        try:
            await client.publish(topic, body, qos=1, retain=False, timeout=10)
        except aiomqtt.MqttError as exc:
            raise CommandError(f"broker did not take the command: {exc}") from None
        return topic


async def stop_task(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

