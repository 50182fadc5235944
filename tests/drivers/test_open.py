"""The registry of pump URL schemes and simulator kinds (pumpctl.drivers.open)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from pumpctl.clock import Clock, LoopClock
from pumpctl.clock import run as run_clock
from pumpctl.drivers import open as registry
from pumpctl.drivers.base import PumpDriver, PumpState
from pumpctl.drivers.fake import FakeDriver
from pumpctl.drivers.newera.scheme import NewEraTarget
from pumpctl.drivers.open import (
    PumpLine,
    PumpTarget,
    PumpUrlError,
    Scheme,
    SimulatedSetup,
    open_driver,
    parse_pump_url,
    simulator_kind,
)
from pumpctl.errors import UsageError

REPO = Path(__file__).resolve().parents[2]


def test_newera_registers_its_schemes_and_owns_plain_paths() -> None:
    assert {"newera", "newera+tcp"} <= set(registry.schemes())
    assert parse_pump_url("/tmp/ne") == NewEraTarget("newera", path="/tmp/ne")
    assert parse_pump_url("ne") == NewEraTarget("newera", path="ne")
    assert parse_pump_url("newera:rel/ne?baud=9600").path == "rel/ne"
    tcp = parse_pump_url("NEWERA+TCP://127.0.0.1:4001?address=3&safe=5")
    assert isinstance(tcp, NewEraTarget) and (tcp.host, tcp.port, tcp.address) == (
        "127.0.0.1", 4001, 3)
    assert tcp.watchdog_s == 5 and tcp.with_address(7).address == 7


@pytest.mark.parametrize("url", ["bogus://x", "profibus://127.0.0.1:502", "http://pump"])
def test_unknown_scheme_is_one_line_naming_the_known_ones(url: str) -> None:
    with pytest.raises(PumpUrlError) as info:
        parse_pump_url(url)
    message = str(info.value)
    assert "\n" not in message and "unknown scheme" in message
    assert "newera://" in message and "newera+tcp://" in message
    assert "modbus+tcp://" in message and "modbus+rtu://" in message


class _FakeLine:
    """A line of fake pumps, to show how a protocol package plugs in."""

    def __init__(self) -> None:
        self.drivers: dict[int, FakeDriver] = {}
        self.closed = False

    def pump(self, address: int) -> PumpDriver:
        return self.drivers.setdefault(address, FakeDriver())

    async def scan(self, addresses: Sequence[int], *, timeout_s: float,
                   attempts: int = 1) -> list[int]:
        return [a for a in addresses if a in (2, 5)]

    async def close(self) -> None:
        self.closed = True


class _Target:
    scheme = "fake"

    def __init__(self, address: int = 0) -> None:
        self.address = address
        self.watchdog_s: int | None = None
        self.watchdog_param = "safe"

    def with_address(self, address: int) -> PumpTarget:
        return _Target(address)


def test_a_protocol_package_registers_its_own_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[_FakeLine] = []

    @contextlib.asynccontextmanager
    async def connect(target: PumpTarget, clock: Clock | None) -> AsyncIterator[PumpLine]:
        line = _FakeLine()
        lines.append(line)
        try:
            yield line
        finally:
            await line.close()

    registry.schemes()  # the real ones first
    monkeypatch.setitem(registry._SCHEMES, "fake", Scheme("fake", "fake://", lambda u: _Target(),
                                                          connect))

    async def main() -> None:
        async with open_driver("fake://anything") as driver:
            assert isinstance(driver, FakeDriver)
            await driver.set_rate(10.0)
            await driver.run()
            assert (await driver.status()).state is PumpState.INFUSING
        assert lines[0].closed
        async with registry.open_line("fake://x") as line:
            assert await line.scan(range(10), timeout_s=0.1) == [2, 5]

    run_clock(main(), virtual=True)
    with pytest.raises(ValueError, match="already registered"):
        registry.register_scheme(Scheme("fake", "fake://", lambda u: _Target(), connect))


def test_simulator_kinds_build_an_embedded_pump_with_a_sensor() -> None:
    assert simulator_kind().name == "newera" and simulator_kind("NewEra").name == "newera"
    assert simulator_kind("isco-d").name == "isco-d"  # a Modbus map's kind
    with pytest.raises(UsageError, match=r"simulator kind 'syringe-x' is not known \(known: "
                                         r"generic, isco-d, newera, vindum-vp"):
        simulator_kind("syringe-x")
    with pytest.raises(UsageError, match="fault kind"):
        simulator_kind().check_faults(["clog@10m"])

    async def main() -> None:
        setup = SimulatedSetup(LoopClock(), 26.59, ["stuck-motor@1s"])
        async with simulator_kind().start(setup) as embedded:
            assert (await embedded.driver.identify()).model == "NE-1000"
            assert embedded.sensor is not None
            assert embedded.driver.capabilities.watchdog is not None

    run_clock(main(), virtual=True)


@pytest.mark.parametrize("args", [["pump", "--port", "bogus://x", "status"],
                                  ["run", "configs/plans/ketamine-0.5mgkg-40min.yaml",
                                   "--weight", "70", "--pump", "bogus://x"]])
def test_the_cli_goes_through_the_registry(args: list[str], tmp_path: Path) -> None:
    if args[0] == "run":
        args = [*args, "--journal", str(tmp_path)]
    result = subprocess.run([sys.executable, "-m", "pumpctl.cli", *args], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown scheme 'bogus'" in lines[0], result.stderr
    assert "newera://, newera+tcp://" in lines[0]


@pytest.mark.parametrize("url", ["newera:///dev/ttyUSB0?safe=5&safe=0",
                                 "modbus+tcp://127.0.0.1:502?map=generic&unit=1&unit=2"])
def test_a_parameter_given_twice_is_refused_naming_it(url: str) -> None:
    from pumpctl.drivers.open import PumpUrlError, parse_pump_url

    with pytest.raises(PumpUrlError, match="given twice"):
        parse_pump_url(url)


def test_urls_of_two_protocols_on_one_line_have_one_line_key(tmp_path: Path) -> None:
    """A pty link and the device it points to, named by New Era and by Modbus URLs, are one
    line; so are two TCP URLs of one host and port."""
    from pumpctl.drivers.open import parse_pump_url

    device = tmp_path / "ttyS9"
    device.touch()
    link = tmp_path / "link"
    link.symlink_to(device)
    keys = {parse_pump_url(f"newera://{link}").line_key,
            parse_pump_url(f"modbus+rtu://{device}?map=generic").line_key}
    assert keys == {str(device.resolve())}
    tcp = {parse_pump_url("newera+tcp://LocalHost:4001").line_key,
           parse_pump_url("modbus+rtu+tcp://localhost:4001?map=vindum-vp").line_key,
           parse_pump_url("modbus+tcp://127.1:4001?map=isco-d").line_key,
           parse_pump_url("newera+tcp://127.0.0.1:4001").line_key}
    assert tcp == {"tcp:127.0.0.1:4001"}  # however the host is named: its address
    assert parse_pump_url("newera+tcp://127.0.0.1:4002").line_key == "tcp:127.0.0.1:4002"
