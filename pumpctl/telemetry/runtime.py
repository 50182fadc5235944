"""What `pumpctl run` plugs in: a `RecordSink` that spools every record and streams it over MQTT.

    controller = InfusionController(...)
    async with telemetry_for_run(url, site=..., pump_id=controller.channel, spool_dir=...,
                                 controller_hooks=controller,
                                 journal_note=controller.journal_note) as sink:
        controller.add_sink(sink)
        await controller.run()

`emit` only maps the record and appends it to the on-disk spool (no network, no await), so
the controller never waits for the broker; a background task publishes in order. Leaving the
context drains the spool for at most `drain_timeout_s`, publishes `offline` and disconnects;
whatever could not be sent stays in `spool_dir` and goes out first on the next run that uses
the same directory.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from pumpctl.telemetry.discovery import discovery_messages
from pumpctl.telemetry.errors import TelemetryError
from pumpctl.telemetry.mapping import MappingError, RecordMapper
from pumpctl.telemetry.mqtt import MqttLink
from pumpctl.telemetry.realtime import real_timeout
from pumpctl.telemetry.remote import ControllerHooks, RemoteCommands
from pumpctl.telemetry.spool import DEFAULT_MAX_BYTES, DEFAULT_MAX_MESSAGES, Spool
from pumpctl.telemetry.topics import Topics
from pumpctl.telemetry.urls import MqttTarget, parse_mqtt_url, read_password

log = logging.getLogger("pumpctl.telemetry")

JournalNote = Callable[[dict[str, Any]], None]


@dataclass
class SinkStats:
    records: int = 0
    unmapped: int = 0  # records that broke the journal contract (logged, not sent)
    messages: int = 0
    after_close: int = 0  # records emitted after aclose (a wiring mistake): not sent


class TelemetrySink:
    """The `RecordSink` handed to the controller. Never raises from `emit`, never blocks."""

    def __init__(self, mapper: RecordMapper, spool: Spool, link: MqttLink,
                 *, drain_timeout_s: float, commands: RemoteCommands | None = None) -> None:
        self.mapper = mapper
        self.spool = spool
        self.link = link
        self.commands = commands
        self.stats = SinkStats()
        self._drain_timeout_s = drain_timeout_s
        self._closed = False

    def emit(self, record: dict[str, Any]) -> None:
        if self._closed:
            self.stats.after_close += 1
            if self.stats.after_close == 1:
                log.warning("telemetry: records after close are not sent (first: %r)",
                            record.get("type"))
            return
        self.stats.records += 1
        try:
            for message in self.mapper.map(record):
                self.spool.append(message)
                self.stats.messages += 1
        except MappingError as exc:
            self.stats.unmapped += 1
            log.warning("telemetry: record not sent: %s", exc)
        except Exception:  # the controller must not fail because telemetry did
            self.stats.unmapped += 1
            log.exception("telemetry: record not sent")

    async def drain(self, timeout_s: float) -> bool:
        """Wait until the broker has every spooled message; False if `timeout_s` (real
        seconds, also under a virtual-time loop) ran out."""
        try:
            async with real_timeout(timeout_s):
                await self.spool.wait_empty()
        except TimeoutError:
            return False
        return True

    async def aclose(self) -> None:
        """Drain (bounded), say offline, disconnect, release the spool; log the counts."""
        if self._closed:
            return
        self._closed = True
        drained = await self.drain(self._drain_timeout_s)
        await self.link.close()
        self.spool.close()
        if not drained:
            log.warning("telemetry: %d messages not yet sent stay in %s for the next run",
                        self.spool.pending, self.spool.directory)
        counts = self.summary()
        level = logging.WARNING if counts["dropped_telemetry"] or counts["dropped_events"] \
            else logging.INFO
        log.log(level, "telemetry summary: %s",
                ", ".join(f"{k}={v}" for k, v in counts.items()))

    def summary(self) -> dict[str, Any]:
        """Counts: what was sent, dropped by the overflow policy, left over, reconnects."""
        spool = self.spool.stats
        return {"broker": self.link.target.display, "topic_prefix": self.link.topics.base,
                "records": self.stats.records, "unmapped": self.stats.unmapped,
                "published": self.link.stats.published, "pending": self.spool.pending,
                "dropped_telemetry": spool.dropped_telemetry,
                "dropped_events": spool.dropped_events, "recovered": spool.recovered,
                "connects": self.link.stats.connects,
                "disconnects": self.link.stats.disconnects}


def _check_qos(value: int) -> int:
    if value not in (0, 1):
        raise TelemetryError(f"--telemetry-qos {value}: must be 0 or 1 (events always use 1)")
    return value


def _check_remote_user(target: MqttTarget) -> None:
    if target.username is None:
        raise TelemetryError(
            "--remote-commands needs an authenticated connection: put the user in --mqtt "
            "(mqtts://user@host) so the broker's ACL can vouch for each sender"
        )


def default_client_id(site: str, pump_id: str) -> str:
    """Unique per process: a restarted controller must not take over (and silence) the old
    connection's Last Will, and two runs must not kick each other off the broker."""
    return f"pumpctl-{site}-{pump_id}-{os.getpid()}-{secrets.token_hex(3)}"[:64]


@asynccontextmanager
async def telemetry_for_run(
    mqtt_url: str,
    *,
    site: str,
    pump_id: str,
    telemetry_qos: int = 0,
    ha_discovery: bool = False,
    remote_commands: bool = False,
    spool_dir: Path,
    password: str | None = None,
    controller_hooks: object | None = None,
    journal_note: JournalNote | None = None,
    drain_timeout_s: float = 10.0,
    spool_max_messages: int = DEFAULT_MAX_MESSAGES,
    spool_max_bytes: int = DEFAULT_MAX_BYTES,
) -> AsyncIterator[TelemetrySink]:
    """Stream one pump's run to an MQTT broker; yields the sink for `InfusionController(sinks=)`.

    CLI options of `pumpctl run` and the argument each maps to:

    - `--mqtt URL` → `mqtt_url`: `mqtt://[user@]host[:port]` or `mqtts://user@host:8883`,
      with optional `?ca=FILE&cert=FILE&key=FILE&client_id=ID&prefix=T&keepalive=S`
      (`prefix` may use `{site}` and `{pump_id}`; default `pumpctl/{site}/{pump_id}`).
      A password inside the URL is refused.
    - `--mqtt-password-file FILE`, else env `PUMPCTL_MQTT_PASSWORD` → `password`: read them
      with `pumpctl.telemetry.urls.read_password(file)`; the password is only given to the
      MQTT client, never logged and never in a journal note.
    - `--site S` → `site`; `--pump-id ID` → `pump_id` (topic levels: A-Z a-z 0-9 _ . -).
    - `--telemetry-qos 0|1` → `telemetry_qos` (events, run and status are always QoS 1).
    - `--ha-discovery` → `ha_discovery`: publish Home Assistant discovery configs.
    - `--remote-commands` → `remote_commands`: accept stop/pause on `<prefix>/cmd/<user>`;
      needs `controller_hooks` (the `InfusionController`: `request_stop`/`request_pause`)
      and a username in the URL (the broker's ACL authenticates the sender level).

    `spool_dir` is this pump's spool directory; reuse the same one across runs (for example
    `<state dir>/spool/<site>/<pump_id>`) so anything left unsent after an outage is sent by
    the next run. `journal_note(dict)` is called for every well-formed remote command,
    accepted or refused, with a journal `command` record body:
    `{"type": "command", "op": "remote_command", "args": {"command", "reason"},
    "sender": "mqtt:<user>", "result": "accepted"}` (or `"error": "refused: ..."`), so
    `journal.write(note.pop("type"), **note)` stores it. Counts (published, dropped by the
    overflow policy, left in the spool) are logged at close and available as
    `sink.summary()`. Configuration errors raise `TelemetryError` before anything starts.
    """
    target = parse_mqtt_url(mqtt_url)
    qos = _check_qos(telemetry_qos)
    topics = Topics.for_pump(site, pump_id, target.prefix)
    commands: RemoteCommands | None = None
    if remote_commands:
        if controller_hooks is None:
            raise TelemetryError("--remote-commands needs the controller's stop/pause hooks")
        _check_remote_user(target)
        hooks: ControllerHooks = controller_hooks  # type: ignore[assignment]
        commands = RemoteCommands(topics, hooks, journal_note)
    tls_context = target.ssl_context()
    spool = Spool(spool_dir, max_messages=spool_max_messages, max_bytes=spool_max_bytes).open()
    mapper = RecordMapper(topics, site=site, pump_id=pump_id, telemetry_qos=qos,
                          remote_commands=commands is not None)
    on_command = None
    if commands is not None:
        handler = commands

        def on_command(message: aiomqtt.Message) -> None:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            handler.handle(message.topic.value, payload, retained=message.retain)

    link = MqttLink(
        target, topics=topics, spool=spool,
        client_id=target.client_id or default_client_id(site, pump_id),
        password=password, tls_context=tls_context,
        connect_messages=discovery_messages(topics, site, pump_id) if ha_discovery else (),
        on_command=on_command,
    )
    sink = TelemetrySink(mapper, spool, link, drain_timeout_s=drain_timeout_s,
                         commands=commands)
    link.start()
    try:
        yield sink
    finally:
        await sink.aclose()


def telemetry_sink_factory(
    mqtt_url: str,
    *,
    site: str,
    spool_root: Path,
    pump_id: str | None = None,
    telemetry_qos: int = 0,
    ha_discovery: bool = False,
    remote_commands: bool = False,
    password_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    drain_timeout_s: float = 10.0,
) -> Callable[[Any], AbstractAsyncContextManager[TelemetrySink]]:
    """A `RunOptions.sink_factories` entry for `pumpctl run --mqtt ...`, checked up front.

    Every option is validated here, before any pump is touched (URL, password file or
    `PUMPCTL_MQTT_PASSWORD`, QoS, site and pump id, remote commands needing a user); errors
    are `TelemetryError`. The factory takes the controller and streams its run with
    `telemetry_for_run`: pump id `pump_id` or else the controller's channel, spool in
    `spool_root/<site>/<pump id>`, the controller's `request_*` hooks and `journal_note`.
    """
    target = parse_mqtt_url(mqtt_url)
    _check_qos(telemetry_qos)
    password = read_password(password_file, environ)
    Topics.for_pump(site, pump_id or "pump0", target.prefix)
    if remote_commands:
        _check_remote_user(target)
    target.ssl_context()  # missing or unreadable TLS files are reported now

    def factory(controller: Any) -> AbstractAsyncContextManager[TelemetrySink]:
        pid = pump_id or str(controller.channel)
        return telemetry_for_run(
            mqtt_url, site=site, pump_id=pid, telemetry_qos=telemetry_qos,
            ha_discovery=ha_discovery, remote_commands=remote_commands,
            spool_dir=spool_root / site / pid, password=password,
            controller_hooks=controller, journal_note=controller.journal_note,
            drain_timeout_s=drain_timeout_s)

    return factory
