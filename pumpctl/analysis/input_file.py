"""Reading a small text file a user names (a balance log, a samples CSV).

The file is read by `pumpctl.files`, the reader every loader shares: a FIFO, a device, a
directory or an oversized file is a one-line error at once, never a hang or a full memory.
What is particular to balance logs is only the text: UTF-8, or Latin-1 when it is not valid
UTF-8 (older balance software writes its own code page).
"""

from __future__ import annotations

from pathlib import Path

from pumpctl import files
from pumpctl.files import InputFileError

__all__ = ["MAX_TEXT_BYTES", "InputFileError", "read_text_file"]

MAX_TEXT_BYTES = files.CSV.max_bytes  # a day of 1 s balance readings is about 3 MB


def read_text_file(path: Path, *, what: str = "file", max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The text of the regular file `path` (UTF-8, or Latin-1 when it is not valid UTF-8)."""
    data = files.read_bytes(path, files.FileKind(what, max_bytes))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")
