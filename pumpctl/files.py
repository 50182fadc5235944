"""Reading the files a user names: plans, libraries, journals, spools, passwords, CSVs.

Every loader reads through `read_bytes`/`read_text` here, so every kind of path fails the same
way: with one line, at once, in bounded memory. A path can name many things that are not a
file of text: `/dev/zero` (endless), a FIFO (blocks until someone writes), a directory, a
terminal, a 2 GB sparse file, a symlink loop. So the file is opened with `O_NONBLOCK` (opening
a FIFO without a writer returns at once instead of waiting), `fstat` on the open descriptor
must say it is a regular file (checked on what was opened, not on the name), its size must be
within the limit of its kind, and the read stops one byte past that limit whatever the size
claimed (files in /proc report 0 and can still be read).

YAML goes through `parse_yaml`, the one loader of the project: a safe loader that also refuses
a key given twice in one mapping (naming the key and both lines) instead of silently keeping
the last one.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pumpctl.errors import PumpctlError


@dataclass(frozen=True)
class FileKind:
    """What a file is for (named in errors) and how large it may be."""

    name: str
    max_bytes: int


# Limits with room to spare over the largest real file of each kind.
PLAN = FileKind("plan", 1_000_000)
LIBRARY = FileKind("drug library", 1_000_000)
SYRINGES = FileKind("syringe table", 1_000_000)
PUMP_PROFILE = FileKind("pump profile", 1_000_000)
COURSE = FileKind("course", 1_000_000)
CONFIG = FileKind("configuration file", 1_000_000)
# 100 minutes at a 0.1 s poll is 60,000 samples of ~600 bytes: 36 MB.
JOURNAL = FileKind("journal", 256 * 1024 * 1024)
# A segment holds at most SEGMENT_MESSAGES lines; each payload is bounded by the spool.
SPOOL_SEGMENT = FileKind("spool segment", 128 * 1024 * 1024)
SPOOL_CURSOR = FileKind("spool ack cursor", 4096)
PASSWORD = FileKind("password file", 4096)
TLS_FILE = FileKind("TLS certificate or key", 1_000_000)
CSV = FileKind("CSV file", 32 * 1024 * 1024)  # a day of 1 s balance readings is ~3 MB

_CHUNK = 1 << 20


class InputFileError(PumpctlError):
    """A named file that cannot be used: missing, not a regular file, too large, unreadable."""

    exit_code = 2

    def __init__(self, path: Path | str, kind: FileKind, problem: str) -> None:
        self.path = str(path)
        self.kind = kind
        self.problem = problem
        super().__init__(f"{kind.name} {self.path}: {problem}")


def _what(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _open(path: Path | str, kind: FileKind) -> tuple[int, os.stat_result]:
    """An open descriptor of a regular file within the size limit, and its fstat."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(os.fspath(Path(path).expanduser()), flags)
    except ValueError:  # a NUL byte in the path (from a YAML string, say)
        raise InputFileError(repr(str(path)), kind, "not a usable path (a NUL byte in it)"
                             ) from None
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            problem = "no such file"
        elif exc.errno == errno.ELOOP:
            problem = "symlink loop (too many levels of symbolic links)"
        else:
            problem = f"cannot open: {exc.strerror or exc}"
        raise InputFileError(path, kind, problem) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputFileError(path, kind, f"{_what(st.st_mode)}, not a regular file")
        if st.st_size > kind.max_bytes:
            raise InputFileError(path, kind, f"{st.st_size} bytes, limit {kind.max_bytes} bytes "
                                             f"for a {kind.name}")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def is_file(path: Path | str) -> bool:
    """`Path.is_file`, but False instead of an exception for a name the system cannot even
    look up (too long, a NUL byte, a loop of links): such a name is no file of ours."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def is_dir(path: Path | str) -> bool:
    """`Path.is_dir`, False for a name the system cannot look up (see `is_file`)."""
    try:
        return Path(path).is_dir()
    except (OSError, ValueError):
        return False


def check_file(path: Path | str, kind: FileKind) -> None:
    """Refuse what `read_bytes` would refuse, for files another library opens by name (TLS)."""
    fd, _ = _open(path, kind)
    os.close(fd)


def read_bytes(path: Path | str, kind: FileKind) -> bytes:
    """The whole content of a regular file, at most `kind.max_bytes`; else `InputFileError`."""
    fd, _ = _open(path, kind)
    try:
        chunks: list[bytes] = []
        total = 0
        while True:
            try:
                chunk = os.read(fd, min(_CHUNK, kind.max_bytes + 1 - total))
            except OSError as exc:
                raise InputFileError(path, kind, f"cannot read: {exc.strerror or exc}") from None
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > kind.max_bytes:  # grew while being read, or its size was not told
                raise InputFileError(path, kind, f"more than {kind.max_bytes} bytes, limit "
                                                 f"for a {kind.name}")
        return b"".join(chunks)
    finally:
        os.close(fd)


def decode_utf8(data: bytes, path: Path | str, kind: FileKind) -> str:
    """UTF-8 text; invalid bytes are an error naming the line and byte offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputFileError(path, kind, f"line {line}: not UTF-8 text (byte "
                                         f"0x{data[exc.start]:02x} at offset {exc.start})"
                             ) from None


def read_text(path: Path | str, kind: FileKind) -> str:
    """`read_bytes` decoded as UTF-8 (a leading byte-order mark is dropped)."""
    return decode_utf8(read_bytes(path, kind), path, kind).removeprefix("\ufeff")


# -- YAML ------------------------------------------------------------------------------------
# The loader lives in pumpctl.strict_yaml, imported on first use: commands that read no YAML
# (`--help`, `version`) never load PyYAML.

_YAML_NAMES = ("DuplicateKeyError", "StrictLoader", "parse_yaml")


def __getattr__(name: str) -> Any:
    if name in _YAML_NAMES:
        from pumpctl import strict_yaml

        return getattr(strict_yaml, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
