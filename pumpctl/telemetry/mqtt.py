"""The broker connection: forwards the spool in order, keeps `status` honest, takes commands.

One aiomqtt client per connection attempt, reconnecting with capped exponential backoff for
as long as the run lasts. Each connection:

1. connects with Last Will `offline` (retained, QoS 1) on `status`, so a crash shows;
2. publishes `online` (retained), Home Assistant configs, and the last retained `run` again
   (a broker restarted without persistence would otherwise have forgotten it);
3. subscribes to `cmd/+` when remote commands are enabled;
4. forwards the spool from its oldest pending message, up to `window` publishes in flight,
   acknowledging spool entries strictly in order once the broker has them.

A lost connection surfaces through aiomqtt's message iterator (which fails on disconnect), so
publishes can wait for their acknowledgement without a timeout: under a virtual-time loop a
timeout would expire in simulated seconds while the broker answers in real ones. Messages in
flight when a connection drops stay pending and go out again, in order, on the next one.
A clean close publishes `offline` itself, since a clean disconnect does not fire the Will.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiomqtt

from pumpctl.telemetry.realtime import real_timeout
from pumpctl.telemetry.spool import MessageKind, OutMessage, Spool
from pumpctl.telemetry.topics import Topics
from pumpctl.telemetry.urls import MqttTarget

log = logging.getLogger("pumpctl.telemetry.mqtt")

STATUS_ONLINE = b"online"
STATUS_OFFLINE = b"offline"


@dataclass
class LinkStats:
    connects: int = 0
    disconnects: int = 0
    published: int = 0
    last_error: str = ""


class MqttLink:
    """Owns the connection for one pump for the duration of a run."""

    def __init__(self, target: MqttTarget, *, topics: Topics, spool: Spool, client_id: str,
                 password: str | None = None, tls_context: ssl.SSLContext | None = None,
                 connect_messages: Sequence[OutMessage] = (),
                 on_command: Callable[[aiomqtt.Message], None] | None = None,
                 window: int = 16, backoff_initial_s: float = 0.5, backoff_max_s: float = 10.0,
                 op_timeout_s: float = 5.0) -> None:
        self.target = target
        self.topics = topics
        self.spool = spool
        self.client_id = client_id
        self._password = password
        self._tls_context = tls_context
        self._connect_messages = tuple(connect_messages)
        self._on_command = on_command
        self._window = max(1, window)
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._op_timeout = op_timeout_s
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_run: OutMessage | None = None
        self._outage_reported = False
        self.connected = asyncio.Event()
        self.stats = LinkStats()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"mqtt-link {self.topics.base}")

    async def close(self, timeout_s: float = 5.0) -> None:
        """Say `offline` and disconnect if connected; give up after `timeout_s` real seconds."""
        self._closing.set()
        if self._task is None:
            return
        try:
            async with real_timeout(timeout_s):
                await asyncio.shield(self._task)
        except TimeoutError:
            log.warning("MQTT link %s did not close within %.1f s", self.target.display,
                        timeout_s)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run(self) -> None:
        """Connect, forward, reconnect; until `close()`."""
        delay = self._backoff[0]
        while not self._closing.is_set():
            connects_before = self.stats.connects
            try:
                await self._session()
                continue  # ended cleanly: only close() does that
            except aiomqtt.MqttError as exc:
                self._note_failure(str(exc) or type(exc).__name__)
            except Exception as exc:  # a bug here must never reach the controller
                log.exception("MQTT link %s failed unexpectedly", self.target.display)
                self._note_failure(repr(exc))
            finally:
                self.connected.clear()
            if self.stats.connects > connects_before:  # lost an established connection
                self.stats.disconnects += 1
                delay = self._backoff[0]
            with contextlib.suppress(TimeoutError):
                async with real_timeout(delay):
                    await self._closing.wait()
            delay = min(delay * 2, self._backoff[1])

    # -- one connection -------------------------------------------------------------------

    def _client(self) -> aiomqtt.Client:
        client = aiomqtt.Client(
            self.target.host, self.target.port,
            username=self.target.username, password=self._password,
            identifier=self.client_id, keepalive=self.target.keepalive_s,
            will=aiomqtt.Will(self.topics.status, STATUS_OFFLINE, qos=1, retain=True),
            tls_context=self._tls_context,
            timeout=math.inf,  # bounded below in real seconds instead of loop seconds
        )
        client.pending_calls_threshold = self._window + 16  # a full window is normal
        return client

    async def _session(self) -> None:
        client = self._client()
        try:
            async with real_timeout(self._op_timeout):
                await client.__aenter__()
        except TimeoutError:
            await self._abandon(client)
            raise aiomqtt.MqttError(f"no answer within {self._op_timeout:g} s") from None
        try:
            await self._connected_session(client)
        finally:
            await self._abandon(client)

    async def _abandon(self, client: aiomqtt.Client) -> None:
        """Disconnect (cleanly if still possible), without waiting long for a dead broker."""
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with real_timeout(min(self._op_timeout, 2.0)):
                await client.__aexit__(None, None, None)

    async def _connected_session(self, client: aiomqtt.Client) -> None:
        self.stats.connects += 1
        self._outage_reported = False
        log.info("MQTT connected to %s as %s (%d spooled messages to send)",
                 self.target.display, self.client_id, self.spool.pending)
        watcher = asyncio.create_task(self._watch(client))
        worker = asyncio.create_task(self._work(client))
        closer = asyncio.create_task(self._closing.wait())
        tasks = (watcher, worker, closer)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self.connected.clear()
        for task in (watcher, worker):
            if task in done and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if closer in done:
            await client.publish(self.topics.status, STATUS_OFFLINE, qos=1, retain=True)
            log.info("MQTT %s: offline, disconnecting", self.target.display)

    async def _watch(self, client: aiomqtt.Client) -> None:
        """Deliver commands; raises MqttError as soon as the connection is lost."""
        async for message in client.messages:
            if self._on_command is not None:
                self._on_command(message)

    async def _publish(self, client: aiomqtt.Client, message: OutMessage) -> None:
        await client.publish(message.topic, message.payload, qos=message.qos,
                             retain=message.retain, timeout=math.inf)

    async def _work(self, client: aiomqtt.Client) -> None:
        await client.publish(self.topics.status, STATUS_ONLINE, qos=1, retain=True,
                             timeout=math.inf)
        for message in self._connect_messages:
            await self._publish(client, message)
        if self._last_run is not None:
            await self._publish(client, self._last_run)
        if self._on_command is not None:
            await client.subscribe(self.topics.cmd_filter, qos=1, timeout=math.inf)
        self.connected.set()
        self.spool.rewind()
        await self._forward(client)

    async def _forward(self, client: aiomqtt.Client) -> None:
        inflight: deque[tuple[int, OutMessage, asyncio.Task[None]]] = deque()
        try:
            while True:
                while len(inflight) < self._window:
                    entry = self.spool.take()
                    if entry is None:
                        break
                    future = asyncio.create_task(self._publish(client, entry.message))
                    inflight.append((entry.id, entry.message, future))
                if not inflight:
                    await self.spool.wait_available()
                    continue
                entry_id, message, future = inflight[0]
                await future
                inflight.popleft()
                self.spool.ack(entry_id)
                self.stats.published += 1
                if message.kind is MessageKind.RUN and message.topic == self.topics.run:
                    self._last_run = message
        finally:
            for _, _, future in inflight:
                future.cancel()
            if inflight:
                await asyncio.gather(*(f for _, _, f in inflight), return_exceptions=True)

    def _note_failure(self, reason: str) -> None:
        self.stats.last_error = reason
        if not self._outage_reported:
            self._outage_reported = True
            log.warning("MQTT broker %s unreachable (%s); spooling, %d messages pending",
                        self.target.display, reason, self.spool.pending)
        else:
            log.debug("MQTT broker %s still unreachable (%s)", self.target.display, reason)
