"""Reading a small text file a user names, without hanging on or swallowing anything odd.

A FIFO would block a plain `open().read()` forever, /dev/zero would fill memory, a directory
gives a traceback. The file is opened non-blocking, checked to be a regular file with
`fstat` (on the descriptor, so nothing can be swapped in between), and read up to a limit.

A shared reader for every file pumpctl reads is being added elsewhere (`pumpctl/files.py`);
until then this is the analysis' own small guard, meant to be replaced by it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pumpctl.errors import UsageError

MAX_TEXT_BYTES = 32 * 1024 * 1024  # a day of 1 s balance readings is about 3 MB


class InputFileError(UsageError):
    """A named input file that cannot be read as text."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_text_file(path: Path, *, what: str = "file", max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The text of the regular file `path` (UTF-8, or Latin-1 when it is not valid UTF-8)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputFileError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise InputFileError(f"{what} {path}: cannot open: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputFileError(f"{what} {path} is {_kind(info.st_mode)}, not a regular file")
        if info.st_size > max_bytes:
            raise InputFileError(f"{what} {path} is {info.st_size} bytes; the limit is "
                                 f"{max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 1 << 20):
            size += len(chunk)
            if size > max_bytes:  # grew while being read
                raise InputFileError(f"{what} {path} is over {max_bytes} bytes")
            chunks.append(chunk)
    except OSError as exc:
        raise InputFileError(f"{what} {path}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # older balance software writes its own code page
