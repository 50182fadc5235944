"""Broker addresses (`mqtt://user@host:1883`, `mqtts://user@host:8883?ca=lab-ca.pem`) and passwords.

A password is never accepted inside the URL: command lines end up in shell history, `ps`
output and the run journal. It comes from `--mqtt-password-file` or the
`PUMPCTL_MQTT_PASSWORD` environment variable instead, and nothing here ever prints it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from pumpctl import files
from pumpctl.telemetry.errors import TelemetryError

if TYPE_CHECKING:  # ssl loads when a TLS broker is used, not with every `pumpctl` command
    import ssl

PASSWORD_ENV = "PUMPCTL_MQTT_PASSWORD"
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
QUERY_KEYS = ("ca", "cert", "key", "client_id", "prefix", "keepalive")
MAX_CLIENT_ID = 64
KEEPALIVE_RANGE = (5, 3600)


@dataclass(frozen=True)
class MqttTarget:
    """Where and how to connect; holds no secret."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    client_id: str | None = None
    prefix: str | None = None
    keepalive_s: int = 15

    @property
    def display(self) -> str:
        """The address as it may appear in logs and the journal (user but never a password)."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{user}{host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """A verifying TLS context for `mqtts://` (system CAs unless `?ca=` names a file)."""
        import ssl

        if not self.tls:
            return None
        for name, path in (("ca", self.ca_file), ("cert", self.cert_file), ("key", self.key_file)):
            if path is not None:  # a FIFO or a device here would hang the TLS library's read
                try:
                    files.check_file(path, files.TLS_FILE)
                except files.InputFileError as exc:
                    raise TelemetryError(f"--mqtt ?{name}={path}: {_said(exc.problem)}") from None
        try:
            context = ssl.create_default_context(
                cafile=str(self.ca_file) if self.ca_file else None
            )
            if self.cert_file is not None:
                context.load_cert_chain(
                    str(self.cert_file), str(self.key_file) if self.key_file else None
                )
        except (ssl.SSLError, OSError) as exc:
            raise TelemetryError(f"--mqtt TLS files unusable: {exc}") from None
        return context


def parse_mqtt_url(url: str) -> MqttTarget:
    """Parse `mqtt[s]://[user@]host[:port][?ca=&cert=&key=&client_id=&prefix=&keepalive=]`."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        port_value = parts.port
    except ValueError as exc:
        hint = " (port must be 1..65535)" if "port" in str(exc).lower() else ""
        raise TelemetryError(f"--mqtt {url!r}: {exc}{hint}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise TelemetryError(
            f"--mqtt {url!r}: scheme {parts.scheme or '(none)'!r} is not mqtt:// or mqtts://"
        )
    if parts.password is not None:
        raise TelemetryError(
            "--mqtt URL contains a password: pass it with --mqtt-password-file or "
            f"{PASSWORD_ENV} so it stays out of the process list and the journal"
        )
    host = parts.hostname
    if not host:
        raise TelemetryError(f"--mqtt {url!r}: no host name")
    if parts.path not in ("", "/"):
        raise TelemetryError(
            f"--mqtt {url!r}: unexpected path {parts.path!r} (use ?prefix= for the topic prefix)"
        )
    if port_value == 0:
        raise TelemetryError(f"--mqtt {url!r}: port 0 is out of range 1..65535")
    query = _parse_query(url, parts.query)
    username = unquote(parts.username) if parts.username else None
    client_id = query.get("client_id")
    if client_id is not None and not 0 < len(client_id) <= MAX_CLIENT_ID:
        raise TelemetryError(
            f"--mqtt ?client_id={client_id!r}: length {len(client_id)} not in 1..{MAX_CLIENT_ID}"
        )
    keepalive = _parse_keepalive(query.get("keepalive"))
    tls = scheme == "mqtts"
    for key in ("ca", "cert", "key"):
        if key in query and not tls:
            raise TelemetryError(f"--mqtt ?{key}= needs an mqtts:// URL, got {scheme}://")
    if "key" in query and "cert" not in query:
        raise TelemetryError("--mqtt ?key= given without ?cert= (the client certificate)")
    return MqttTarget(
        host=host,
        port=port_value or DEFAULT_PORTS[scheme],
        tls=tls,
        username=username,
        ca_file=Path(query["ca"]).expanduser() if "ca" in query else None,
        cert_file=Path(query["cert"]).expanduser() if "cert" in query else None,
        key_file=Path(query["key"]).expanduser() if "key" in query else None,
        client_id=client_id,
        prefix=query.get("prefix"),
        keepalive_s=keepalive,
    )


def _parse_query(url: str, query: str) -> dict[str, str]:
    try:
        raw = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise TelemetryError(f"--mqtt {url!r}: malformed query string {query!r}") from None
    result: dict[str, str] = {}
    for key, values in raw.items():
        if key not in QUERY_KEYS:
            raise TelemetryError(
                f"--mqtt ?{key}=: unknown option (known: {', '.join(QUERY_KEYS)})"
            )
        if len(values) != 1 or not values[0]:
            raise TelemetryError(f"--mqtt ?{key}=: needs exactly one non-empty value")
        result[key] = values[0]
    return result


def _parse_keepalive(text: str | None) -> int:
    low, high = KEEPALIVE_RANGE
    if text is None:
        return 15
    try:
        value = int(text)
    except ValueError:
        raise TelemetryError(f"--mqtt ?keepalive={text!r}: not a whole number of seconds") from None
    if not low <= value <= high:
        raise TelemetryError(f"--mqtt ?keepalive={value}: outside {low}..{high} s")
    return value


def read_password(
    password_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The broker password from `--mqtt-password-file` (first line) or `PUMPCTL_MQTT_PASSWORD`.

    The file wins over the environment because it was named explicitly on this command line.
    Returns None when neither is set (anonymous or certificate-only brokers).
    """
    if password_file is not None:
        try:
            text = files.read_text(password_file, files.PASSWORD)
        except files.InputFileError as exc:
            # The problem only: never any of the file's content, which may be the password.
            raise TelemetryError(f"--mqtt-password-file {password_file}: "
                                 f"{_said(exc.problem.split(' (byte ')[0])}") from None
        lines = text.splitlines()
        password = lines[0] if lines else ""
        if not password:
            raise TelemetryError(f"--mqtt-password-file {password_file}: first line is empty")
        return password
    env = os.environ if environ is None else environ
    value = env.get(PASSWORD_ENV)
    return value if value else None


def _said(problem: str) -> str:
    """The problem as telemetry options have always said it."""
    return "file not found" if problem == "no such file" else problem
