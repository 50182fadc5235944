"""`pumpctl sim balance` in its own process, and the driver reaching it by URL (pty, TCP)."""

from __future__ import annotations

import asyncio
import selectors
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pumpctl.cli import main
from pumpctl.drivers.balance.mtsics import BalanceError
from pumpctl.drivers.balance.open import BalanceUrlError, open_balance, parse_balance_url

PUMPCTL = [sys.executable, "-m", "pumpctl.cli"]


def _ready_line(proc: subprocess.Popen[str], timeout: float = 20.0) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError("simulator printed no ready line")
    return proc.stdout.readline()


async def _weigh_twice(url: str) -> tuple[float, float, str]:
    async with open_balance(url) as balance:
        first = await balance.weigh_now()
        await asyncio.sleep(0.5)
        second = await balance.weigh_now()
        return first.grams, second.grams, await balance.model()


def test_served_on_a_pty_and_tcp_weighing_a_flow(tmp_path: Path) -> None:
    proc = subprocess.Popen([*PUMPCTL, "sim", "balance", "--link", "bal", "--tcp",
                             "127.0.0.1:0", "--flow", "3600 mL/h", "--container", "50 g"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        ready = _ready_line(proc)
        assert ready.startswith("ready balance link=bal pty=/dev/pts/"), ready
        endpoint = next(w for w in ready.split() if w.startswith("tcp=")).removeprefix("tcp=")
        # 1 mL/s onto the pan: half a second later there is about half a gram more
        a, b, model = asyncio.run(_weigh_twice(f"mtsics://{tmp_path / 'bal'}"))
        assert a > 50.0 and 0.2 < b - a < 2.0
        assert model == "pumpctl-sim 220.0000 g"
        c, d, _ = asyncio.run(_weigh_twice(f"mtsics+tcp://{endpoint}"))
        assert c > b and 0.2 < d - c < 2.0
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    assert not (tmp_path / "bal").exists()


@pytest.mark.parametrize(("args", "message"), [
    ([], "give --link PATH and/or --tcp HOST:PORT"),
    (["--tcp", "x"], "--tcp 'x' must be HOST:PORT"),
    (["--tcp", "127.0.0.1:0", "--flow", "5"], "--flow: '5' has no unit"),
    (["--tcp", "127.0.0.1:0", "--resolution", "5 mL"], "--resolution: '5 mL' has the wrong"),
    (["--tcp", "127.0.0.1:0", "--speed", "max"], "--speed max: virtual time only works"),
])
def test_bad_options_are_one_line(capsys: pytest.CaptureFixture[str], args: list[str],
                                  message: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(["sim", "balance", *args])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert message in err and err.count("\n") == 1, err


@pytest.mark.parametrize(("url", "message"), [
    ("mtsic:///dev/x", "scheme 'mtsic' is not mtsics://"),
    ("mtsics:///dev/x?baud=9601", "baud='9601'"),
    ("mtsics:///dev/x?parity=E", "unknown parameter 'parity'"),
    ("mtsics+tcp://host", "needs host:port"),
    ("mtsics://", "names no serial port"),
    ("mtsics:///dev/x?timeout=0", "timeout='0'"),
])
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(BalanceUrlError) as info:
        parse_balance_url(url)
    assert message in str(info.value)


def test_url_defaults() -> None:
    url = parse_balance_url("mtsics:///dev/ttyUSB1")
    assert (url.path, url.baud, url.serial_url) == ("/dev/ttyUSB1", 9600, "/dev/ttyUSB1")
    tcp = parse_balance_url("mtsics+tcp://127.0.0.1:4002?timeout=1.5")
    assert tcp.serial_url == "socket://127.0.0.1:4002" and tcp.timeout_s == 1.5


def test_a_missing_port_is_one_line(tmp_path: Path) -> None:
    async def main() -> None:
        async with open_balance(f"mtsics://{tmp_path / 'nothing'}"):
            pass

    with pytest.raises(BalanceError, match=r"cannot open balance at .*nothing"):
        asyncio.run(main())
