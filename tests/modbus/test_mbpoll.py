"""An independent Modbus client, `mbpoll` (Debian package; `make system-deps` installs it),
drives `pumpctl sim modbus` over TCP and over RTU on a pty: it starts a run with its own
writes, reads the rate, state and volume registers while the pump runs, and stops it, and
every value reads as the map says (addresses 0-based with `-0`, FLOAT32 high word first with
`-B`, and low word first without it when the simulator serves little-endian words).

The simulator runs at 100x real time, so a second of wall clock moves a visible volume."""

from __future__ import annotations

import re
import selectors
import shutil
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.realtime,
    pytest.mark.skipif(shutil.which("mbpoll") is None,
                       reason="mbpoll is not installed (make system-deps installs it: apt-get "
                              "install mbpoll); the interop test needs an independent client"),
]

PUMPCTL = [sys.executable, "-m", "pumpctl.cli"]
SPEED = 100
_VALUE = re.compile(r"^\[(\d+)\]:\s+(\S+)", re.MULTILINE)


@contextmanager
def simulator(*args: str) -> Iterator[str]:
    """`pumpctl sim modbus ARGS` until the block ends; yields its ready line."""
    proc = subprocess.Popen([*PUMPCTL, "sim", "modbus", *args, "--speed", str(SPEED)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            if not sel.select(20):
                raise AssertionError("the simulator printed no ready line")
        yield proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


class Mbpoll:
    """mbpoll with the line options of one simulator; `-0` (0-based), `-1` (one poll)."""

    def __init__(self, *line: str) -> None:
        self.line = list(line)

    def run(self, *options: str, values: tuple[str, ...] = ()) -> str:
        """mbpoll's output (values to write go after the device or host)."""
        result = subprocess.run(["mbpoll", "-0", "-1", "-o", "2", *options, *self.line,
                                 *values], capture_output=True, text=True, timeout=20)
        return result.stdout + result.stderr

    def read(self, table: str, address: int, count: int = 1, *extra: str) -> list[str]:
        out = self.run("-t", table, "-r", str(address), "-c", str(count), *extra)
        found = _VALUE.findall(out)
        assert len(found) == count, out
        return [value for _, value in found]

    def write_to(self, table: str, address: int, *values: str, extra: tuple[str, ...] = ()
                 ) -> None:
        out = self.run("-t", table, "-r", str(address), *extra, values=values)
        assert f"Written {len(values)} references" in out, out


def words_as_float(words: list[str], order: str) -> float:
    hi, lo = (int(w, 16) for w in (words if order == "big" else words[::-1]))
    return float(struct.unpack(">f", struct.pack(">HH", hi, lo))[0])


def wall_sleep(seconds: float) -> None:
    """Real time for the simulator in another process to move (nothing to wait on)."""
    import time

    time.sleep(seconds)


@pytest.mark.parametrize("order", ["big", "little"])
def test_mbpoll_runs_and_stops_the_generic_pump_over_tcp(order: str) -> None:
    with simulator("--map", "generic", "--tcp", "127.0.0.1:0", "--word-order", order) as ready:
        port = re.search(r"tcp=127\.0\.0\.1:(\d+)", ready)
        assert port is not None, ready
        mb = Mbpoll("-p", port[1], "127.0.0.1")
        b = ("-B",) if order == "big" else ()
        assert mb.read("3", 0, 2) == ["4", "1"]  # state alarm, alarm 1: power reset
        mb.write_to("4", 8, "4")  # command 4: acknowledge
        assert mb.read("3", 0, 2) == ["0", "0"]
        mb.write_to("4:float", 2, "60", extra=b)  # rate set point, mL/h
        assert mb.read("4:float", 2, 1, *b) == ["60"]
        mb.write_to("4", 8, "1")  # command 1: run
        assert mb.read("4", 8) == ["0"]  # the command word reads back 0
        assert mb.read("3", 0) == ["1"]  # infusing
        assert mb.read("3:float", 2, 1, *b) == ["60"]  # rate actual
        wall_sleep(1.0)
        first = float(mb.read("3:float", 4, 1, *b)[0])
        wall_sleep(0.5)
        raw = mb.read("3:hex", 4, 2)
        second = words_as_float(raw, order)  # the words themselves, in the map's order
        assert 0 < first < second < 60.0 * 10 * SPEED / 3600
        mb.write_to("4", 8, "2")  # command 2: stop
        assert mb.read("3", 0) == ["0"]
        assert mb.read("3:float", 2, 1, *b) == ["0"]
        stopped = mb.read("3:float", 4, 1, *b)
        wall_sleep(0.3)
        assert mb.read("3:float", 4, 1, *b) == stopped  # no longer moving
        # Outside the map: mbpoll shows the pump's exception 2.
        assert "Illegal data address" in mb.run("-t", "3", "-r", "12", "-c", "1")


def test_mbpoll_runs_and_stops_the_vindum_pump_over_rtu_on_a_pty(tmp_path: Path) -> None:
    link = tmp_path / "vindum"
    with simulator("--map", "vindum-vp", "--link", str(link)) as ready:
        assert "framer=rtu" in ready and "baud=38400" in ready, ready
        mb = Mbpoll("-m", "rtu", "-b", "38400", "-P", "none", str(link))
        mb.write_to("4", 30, "1")  # rate unit: mL/h
        mb.write_to("4", 2, "1")  # cylinder A: independent rate
        assert mb.read("3", 0) == ["0"]  # command response: accepted
        mb.write_to("4:float", 5, "60", extra=("-B",))  # FC 16, exactly one float
        assert mb.read("3", 0) == ["0"]
        mb.write_to("0", 15, "1")  # start A
        assert mb.read("3", 0) == ["0"]
        assert mb.read("0", 15) == ["0"]  # an action coil reads back 0
        assert mb.read("1", 0) == ["1"]  # A running
        assert mb.read("3:float", 7, 1, "-B") == ["60"]  # A rate
        wall_sleep(1.0)
        volume = float(mb.read("3:float", 13, 1, "-B")[0])
        assert 0 < volume < 60.0 * 10 * SPEED / 3600
        # The whole documented input block in one read, gaps as 0 (IR 22).
        block = mb.read("3", 0, 43)
        assert block[22] == "0"
        mb.write_to("0", 19, "1")  # stop A
        assert mb.read("1", 0) == ["0"]
        assert mb.read("3:float", 7, 1, "-B") == ["0"]
