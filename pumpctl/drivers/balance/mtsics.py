"""MT-SICS lines: what a host sends and how to read what a balance answers.

ASCII, one command per line, every command and reply ending in CR LF. Weight replies are
`<id> <status> <value> <unit>` with the value right-aligned in a padded field (so the line is
split on whitespace); `S` answers both `S` and `SI`. Status letters: `S` stable, `D` dynamic
(not stable, from the immediate commands), `I` not executable now (busy, or no stable reading
in time), `+`/`-` over/underload, `A` done (commands without a weight), `L` logical error.
`ES` (syntax), `ET` (transmission), `EL` (logical) can answer any command.

Everything here is pure: bytes in, typed values or one-line errors naming the bytes out.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from pumpctl.errors import PumpctlError

TERMINATOR = b"\r\n"
MAX_LINE = 256  # longer than any reply of the commands used here
MASS_UNITS_G = {"g": 1.0, "mg": 1e-3, "kg": 1e3}
# The reply id of each command the driver sends (SI is answered with S).
REPLY_ID = {"S": "S", "SI": "S", "Z": "Z", "ZI": "ZI", "T": "T", "TI": "TI", "TAC": "TAC",
            "@": "I4", "I2": "I2", "I4": "I4"}
_COMMAND = re.compile(r"^[A-Z@][A-Z0-9]*$")
_ERRORS = {"ES": "syntax error (command not known)",
           "ET": "transmission error (the balance could not read the command)",
           "EL": "logical error (a parameter it does not allow)"}
_STATUS_WORDS = {"I": "not executable now (busy, or no stable reading in time)",
                 "+": "overload (above the weighing range)", "-": "underload (below the range)",
                 "L": "logical error", "D": "done with a dynamic (unstable) reading"}


class BalanceError(PumpctlError):
    """A balance that cannot give a trustworthy reading (exit code as for a pump error)."""

    exit_code = 4


class BalanceProtocolError(BalanceError):
    """Bytes from the balance that are not a reply to what was asked."""


class BalanceRefused(BalanceError):
    """The balance answered, but could not do it: `S I`, `Z +`, `ES` and the like."""

    def __init__(self, message: str, *, status: str) -> None:
        super().__init__(message)
        self.status = status  # "I", "+", "-", "L", or the error code "ES"/"ET"/"EL"


class BalanceTimeout(BalanceError):
    """No reply in time."""


@dataclass(frozen=True)
class Weight:
    value: float  # in `unit`
    unit: str
    stable: bool
    raw: str  # the reply line as received, for journals and messages

    @property
    def grams(self) -> float:
        return self.value * MASS_UNITS_G[self.unit]


@dataclass(frozen=True)
class Reply:
    """A reply line split into id, status and the rest (`S S 12.3 g` -> S, S, [12.3, g])."""

    ident: str
    status: str
    fields: tuple[str, ...]
    raw: str


def encode(command: str) -> bytes:
    """The bytes of one command line; refuses anything that is not one MT-SICS command."""
    name = command.split(" ", 1)[0]
    if not _COMMAND.match(name) or not command.isascii() or "\r" in command or "\n" in command:
        raise ValueError(f"not an MT-SICS command: {command!r}")
    return command.encode("ascii") + TERMINATOR


def _show(line: bytes | str) -> str:
    return repr(line if isinstance(line, str) else bytes(line))


def split_reply(command: str, line: bytes) -> Reply:
    """Check that `line` (without CR LF) answers `command`; raise for `ES`/`ET`/`EL` and for
    anything that is not a reply to it, naming the bytes."""
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise BalanceProtocolError(f"balance reply {_show(line)} to {command}: not ASCII") from None
    parts = text.split()
    name = command.split(" ", 1)[0]
    if len(parts) == 1 and parts[0] in _ERRORS:
        raise BalanceRefused(f"balance answered {parts[0]} to {command}: {_ERRORS[parts[0]]}",
                             status=parts[0])
    expected = REPLY_ID.get(name, name)
    if len(parts) < 2 or parts[0] != expected:
        raise BalanceProtocolError(f"balance reply {_show(line)} to {command}: expected a line "
                                   f"starting with {expected!r}")
    return Reply(parts[0], parts[1], tuple(parts[2:]), text)


def _refused(command: str, reply: Reply) -> BalanceRefused:
    word = _STATUS_WORDS.get(reply.status, f"status {reply.status!r}")
    return BalanceRefused(f"balance answered {reply.raw.strip()!r} to {command}: {word}",
                          status=reply.status)


def parse_weight(command: str, line: bytes) -> Weight:
    """A weight reply (`S S`/`S D` to S or SI, `T S` to T, `TI S`/`TI D` to TI)."""
    reply = split_reply(command, line)
    if reply.status not in ("S", "D"):
        raise _refused(command, reply)
    if len(reply.fields) != 2:
        raise BalanceProtocolError(f"balance reply {_show(line)} to {command}: expected a value "
                                   "and a unit after the status")
    text, unit = reply.fields
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise BalanceProtocolError(f"balance reply {_show(line)} to {command}: weight {text!r} "
                                   "is not a number")
    if unit not in MASS_UNITS_G:
        raise BalanceProtocolError(f"balance reply {_show(line)} to {command}: unit {unit!r} is "
                                   f"not one of {', '.join(MASS_UNITS_G)} (set the balance to "
                                   "grams)")
    return Weight(value, unit, reply.status == "S", reply.raw)


def parse_done(command: str, line: bytes, *, ok: tuple[str, ...] = ("A",)) -> str:
    """A reply to a command without a weight (`Z A`, `ZI S`, `TAC A`); returns its status."""
    reply = split_reply(command, line)
    if reply.status not in ok:
        raise _refused(command, reply)
    return reply.status


def parse_text(command: str, line: bytes) -> str:
    """The quoted text of an identification reply (`I2 A "..."`, `I4 A "..."`)."""
    reply = split_reply(command, line)
    if reply.status != "A":
        raise _refused(command, reply)
    rest = reply.raw.split(None, 2)[2] if len(reply.raw.split(None, 2)) == 3 else ""
    rest = rest.strip()
    if len(rest) < 2 or not (rest.startswith('"') and rest.endswith('"')):
        raise BalanceProtocolError(f"balance reply {_show(line)} to {command}: expected quoted "
                                   "text after 'A'")
    return rest[1:-1]
