"""The dashboard's own login, in front of remote stop/pause.

Watching needs no login; sending a command does. The password comes from
`PUMPCTL_DASHBOARD_PASSWORD` or the first line of `--login-password-file` (never the command
line: it would show in `ps` and shell history). A login yields a random session cookie
(HttpOnly, SameSite=Strict, Secure under HTTPS) and a separate CSRF token the page keeps in
memory and sends back in a header; a state-changing request needs the cookie, the matching
token, a JSON body and, when the browser sends one, an Origin equal to the page's own.
Failed logins are slowed down and counted, sessions expire, and only hashes of tokens are
kept, so a memory dump does not hand out live sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pumpctl.errors import UsageError

PASSWORD_ENV = "PUMPCTL_DASHBOARD_PASSWORD"
COOKIE = "pumpctl_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_TTL_S = 8 * 3600
MAX_SESSIONS = 1000
MIN_PASSWORD = 8


def read_login_password(password_file: Path | None,
                        environ: Mapping[str, str] | None = None) -> str | None:
    """The login password from `--login-password-file` (first line), else the environment."""
    if password_file is not None:
        try:
            lines = password_file.expanduser().read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise UsageError(f"--login-password-file {password_file}: file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--login-password-file {password_file}: unreadable "
                             f"({type(exc).__name__})") from None
        password = lines[0] if lines else ""
        source = f"--login-password-file {password_file}"
    else:
        password = (os.environ if environ is None else environ).get(PASSWORD_ENV, "")
        if not password:
            return None
        source = PASSWORD_ENV
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"{source}: password of {len(password)} characters, "
                         f"needs at least {MIN_PASSWORD}")
    return password


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Session:
    csrf: str
    expires: float
    remote: str


class Logins:
    """Sessions in memory (a restart logs everyone out, which is the safe direction)."""

    def __init__(self, password: str, *, ttl_s: float = SESSION_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._password = password.encode()
        self._ttl_s = ttl_s
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self.failures = 0

    def check_password(self, attempt: str) -> bool:
        ok = hmac.compare_digest(attempt.encode(), self._password)
        if not ok:
            self.failures += 1
        return ok

    def open(self, remote: str) -> tuple[str, Session]:
        """A new session: (cookie token, session with its CSRF token)."""
        self._expire()
        if len(self._sessions) >= MAX_SESSIONS:  # drop the oldest rather than grow forever
            oldest = min(self._sessions, key=lambda k: self._sessions[k].expires)
            del self._sessions[oldest]
        token = secrets.token_urlsafe(32)
        session = Session(csrf=secrets.token_urlsafe(32), expires=self._clock() + self._ttl_s,
                          remote=remote)
        self._sessions[_digest(token)] = session
        return token, session

    def find(self, token: str | None) -> Session | None:
        if not token:
            return None
        session = self._sessions.get(_digest(token))
        if session is None:
            return None
        if session.expires <= self._clock():
            del self._sessions[_digest(token)]
            return None
        return session

    def close(self, token: str | None) -> None:
        if token:
            self._sessions.pop(_digest(token), None)

    def csrf_ok(self, session: Session, header: str | None) -> bool:
        return header is not None and hmac.compare_digest(header.encode(),
                                                          session.csrf.encode())

    def _expire(self) -> None:
        now = self._clock()
        for key in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[key]

    @property
    def active(self) -> int:
        self._expire()
        return len(self._sessions)
