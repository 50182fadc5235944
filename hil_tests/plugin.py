"""The HIL pytest plugin: one rig per session, fixtures that hand a test the rig's parts,
measurements, and a folder of evidence.

    pytest hil_tests [--rig FILE] [--hil-report DIR]

`--rig` (else `$PUMPCTL_RIG`, else configs/rigs/sim-newera.yaml) names the rig file
(pumpctl.rig). A simulated rig's tests run in virtual time: the plugin gives every async test
that uses the rig a `VirtualTimeLoop` (through pytest-asyncio's loop-factory hook), so a
40-minute plan takes about a second; a hardware rig's run in real time. Fixtures:

    rig                 the loaded rig (session)
    driver, drivers     the rig's first pump's driver, opened; all of them
    controller_factory  factory(program, report=False, pump=0, sensor=True, **RunSettings)
                        -> InfusionController on that driver, journaling into journal_dir
    sim                 the simulator behind a simulated rig (pumps, fault injection);
                        a test using it is marked `sim_only` and skips on a hardware rig
    balance             the rig's balance (MtSicsBalance), opened; skips without one
    volume_sensor       what the controller checks the counter against (balance or physics)
    broker              the rig's broker, else Mosquitto started on a free loopback port
    journal_dir         this test's run journals (copied into the report)
    measure             measure(name, value, units, low=None, high=None)
    hil_table           hil_table(table, row, column, text, ok): a cell of a summary table

Markers: `sim_only` (needs a simulator), `hardware` (needs real hardware), `slow`.
Scenarios written with the older `sim_kind` argument run once per simulator kind
(hil_tests/kinds.py) when no rig is named, and on the rig's kind only when one is.

Registered by hil_tests/conftest.py (`pytest_plugins`), so `pytest hil_tests --rig FILE`
works from the repository root, with or without pytest-xdist. See docs/hil.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pumpctl.clock import VirtualTimeLoop
from pumpctl.drivers.balance.driver import MtSicsBalance
from pumpctl.drivers.base import PumpDriver
from pumpctl.drivers.sensors import ModelBalance, VolumeSensor
from pumpctl.errors import PumpctlError
from pumpctl.plan.program import RateProgram
from pumpctl.rig import Rig, load_rig
from pumpctl.run.controller import InfusionController, RunSettings

from . import evidence
from .kinds import KINDS, SimKind
from .measurements import CELL, MEASUREMENT, Measurement, encode, failure_line, from_properties
from .rig_parts import RigParts, SimHandle, hil_kind, open_rig

REPO = Path(__file__).resolve().parent.parent
DEFAULT_RIG = REPO / "configs" / "rigs" / "sim-newera.yaml"
RIG_ENV = "PUMPCTL_RIG"
MARKERS = (
    "sim_only: needs a simulator (fault injection, the simulated pump); skipped on a "
    "hardware rig. Tests using the `sim` or `sim_kind` fixtures get it automatically",
    "hardware: needs real hardware; skipped on a simulated rig",
    "slow: long scenarios (a whole course; hours of real time on a hardware rig)",
)
# Fixtures that open the rig: a test using any of them runs on the rig's loop and skips
# when the rig cannot be driven here.
RIG_FIXTURES = frozenset({"rig", "rig_parts", "driver", "drivers", "controller_factory", "sim",
                          "balance", "volume_sensor"})


@dataclass
class HilSession:
    rig: Rig
    path: Path
    explicit: bool  # named by --rig or $PUMPCTL_RIG (not the default)
    unavailable: str | None  # why this process cannot drive the rig (an unregistered kind)
    report_dir: Path | None
    measurements: list[dict[str, Any]] = field(default_factory=list)
    cells: list[dict[str, Any]] = field(default_factory=list)

    @property
    def hardware(self) -> bool:
        return not self.rig.pump.simulated


SESSION = pytest.StashKey[HilSession]()
MEASURED = pytest.StashKey[list[Measurement]]()
RENDER = pytest.StashKey[list[str]]()  # run ids whose report pictures a test asked for
COLLECTOR = "pumpctl-hil-collector"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil", "pumpctl hardware-in-the-loop rig")
    group.addoption("--rig", metavar="FILE", default=None,
                    help=f"rig file (configs/rigs/*.yaml); default ${RIG_ENV}, else "
                         "configs/rigs/sim-newera.yaml")
    group.addoption("--hil-report", metavar="DIR", default=None,
                    help="write DIR/measurements.json, DIR/junit.xml and the runs' journals "
                         "and report pictures (DIR/runs/)")


def _rig_source(config: pytest.Config) -> tuple[Path, str, bool]:
    option = config.getoption("--rig", None)
    if option:
        return Path(option), "--rig", True
    env = os.environ.get(RIG_ENV, "").strip()
    if env:
        return Path(env), RIG_ENV, True
    return DEFAULT_RIG, "default rig", False


def _unavailable(rig: Rig) -> str | None:
    problem = rig.unregistered()
    if problem is not None:
        return f"rig {rig.name}: {problem}"
    if rig.pump.sim is not None:
        kind = hil_kind(rig)
        if not isinstance(kind, SimKind):
            return kind
    return None


@pytest.hookimpl(tryfirst=True)  # before junitxml reads its path
def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    path, source, explicit = _rig_source(config)
    try:
        rig = load_rig(path, check_registered=False)
    except PumpctlError as exc:
        raise pytest.UsageError(f"{source}: {exc}") from None
    report = config.getoption("--hil-report", None)
    report_dir = Path(report).resolve() if report else None
    if report_dir is not None:
        try:
            report_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file there, a read-only place, a parent that is a file
            raise pytest.UsageError(f"--hil-report {report}: cannot make a directory there "
                                    f"({exc.strerror or exc})") from None
        if not config.option.xmlpath:
            config.option.xmlpath = str(report_dir / "junit.xml")
    hil = HilSession(rig, path, explicit, _unavailable(rig), report_dir)
    config.stash[SESSION] = hil
    if not _is_worker(config):  # workers send their reports to the controller
        config.pluginmanager.register(Collector(hil), COLLECTOR)


def pytest_unconfigure(config: pytest.Config) -> None:
    collector = config.pluginmanager.get_plugin(COLLECTOR)
    if collector is not None:
        config.pluginmanager.unregister(collector)


def _session(config: pytest.Config) -> HilSession:
    return config.stash[SESSION]


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_report_header(config: pytest.Config) -> str:
    s = _session(config)
    what = f"simulated ({s.rig.pump.sim}, {s.rig.pump.link})" if s.rig.pump.sim else \
        f"hardware ({', '.join(s.rig.pump.urls)})"
    line = f"rig: {s.rig.name} ({s.path}), {what}"
    return line + (f"; cannot run here: {s.unavailable}" if s.unavailable else "")


# ---- which tests run on this rig -----------------------------------------------------------

def sim_kind_params(s: HilSession) -> list[Any]:
    """What `sim_kind` scenarios run on: every kind unless a rig was named, else the rig's."""
    if not s.explicit:
        return list(KINDS.values())
    sim = s.rig.pump.sim
    if sim is None:
        return [pytest.param(None, id="hardware", marks=pytest.mark.skip(
            reason=f"rig {s.rig.name} is hardware: this scenario needs a simulator"))]
    if sim in KINDS:
        return [KINDS[sim]]
    return [pytest.param(None, id=sim, marks=pytest.mark.skip(reason=s.unavailable or sim))]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sim_kind" in metafunc.fixturenames:
        metafunc.parametrize("sim_kind", sim_kind_params(_session(metafunc.config)), ids=str)


def plugin_fixtures(item: pytest.Item) -> set[str]:
    """The fixtures of this plugin that `item` uses (directly or through other fixtures);
    a conftest's fixture of the same name is not ours."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return set()
    ours = set()
    for name in info.names_closure:
        defs = info.name2fixturedefs.get(name)
        if defs and getattr(defs[-1].func, "__module__", None) == __name__:
            ours.add(name)
    return ours


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    s = _session(config)
    for item in items:
        ours = plugin_fixtures(item)
        if "sim" in ours or "sim_kind" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.sim_only)
        if item.get_closest_marker("sim_only") and s.hardware:
            item.add_marker(pytest.mark.skip(
                reason=f"rig {s.rig.name} is hardware: sim_only test (needs a simulator)"))
        elif item.get_closest_marker("hardware") and not s.hardware:
            item.add_marker(pytest.mark.skip(
                reason=f"rig {s.rig.name} is simulated: this test needs hardware"))
        elif ours & RIG_FIXTURES and s.unavailable:
            item.add_marker(pytest.mark.skip(reason=s.unavailable))


def pytest_asyncio_loop_factories(config: pytest.Config,
                                  item: pytest.Item) -> dict[str, Callable[[], Any]]:
    """Virtual time for the async tests that use a simulated rig (not those marked
    `realtime`); every other async test gets the loop it would have had anyway."""
    s = config.stash.get(SESSION, None)
    if (s is not None and s.rig.simulated and plugin_fixtures(item) & RIG_FIXTURES
            and item.get_closest_marker("realtime") is None):
        return {"virtual-time": VirtualTimeLoop}
    return {"asyncio": lambda: asyncio.get_event_loop_policy().new_event_loop()}


# ---- fixtures -------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def hil_session(request: pytest.FixtureRequest) -> HilSession:
    return _session(request.config)


@pytest.fixture(scope="session")
def rig(hil_session: HilSession) -> Rig:
    if hil_session.unavailable:
        pytest.skip(hil_session.unavailable)
    return hil_session.rig


@pytest.fixture
def journal_dir(request: pytest.FixtureRequest, tmp_path: Path,
                hil_session: HilSession) -> Iterator[Path]:
    path = tmp_path / "runs"
    path.mkdir(parents=True, exist_ok=True)
    yield path
    if hil_session.report_dir is not None:
        evidence.keep_runs(hil_session.report_dir, request.node.nodeid, path,
                           request.node.stash.get(RENDER, []))


@pytest.fixture
async def rig_parts(rig: Rig, tmp_path: Path) -> AsyncIterator[RigParts]:
    """The rig opened for this test; a port or balance that cannot be opened is one line
    (the test errors), not a traceback."""
    async with contextlib.AsyncExitStack() as stack:
        problem = ""
        try:
            parts = await stack.enter_async_context(open_rig(rig, tmp_path / "rig"))
        except PumpctlError as exc:
            problem = f"rig {rig.name}: {exc}"  # failed outside the handler: no chained trace
        if problem:
            pytest.fail(problem, pytrace=False)
        yield parts


@pytest.fixture
def drivers(rig_parts: RigParts) -> list[PumpDriver]:
    return rig_parts.drivers


@pytest.fixture
def driver(rig_parts: RigParts) -> PumpDriver:
    return rig_parts.drivers[0]


@pytest.fixture
def sim(rig_parts: RigParts) -> SimHandle:
    if rig_parts.sim is None:  # only reached when a test skips the automatic sim_only mark
        pytest.skip(f"rig {rig_parts.rig.name} is hardware: no simulator")
    return rig_parts.sim


@pytest.fixture
def balance(rig_parts: RigParts) -> MtSicsBalance:
    if rig_parts.balance is None:
        pytest.skip(f"rig {rig_parts.rig.name} has no balance")
    return rig_parts.balance


@pytest.fixture
def volume_sensor(rig_parts: RigParts) -> VolumeSensor | None:
    return rig_parts.sensor


ControllerFactory = Callable[..., InfusionController]


def skip_beyond_limits(rig: Rig, program: RateProgram) -> None:
    """Skip the test (naming the limit) if the rig may not run `program`. The factory checks
    too, but only once the rig is open: a fixture that calls this before `controller_factory`
    in a test's arguments keeps a bench's pump from even being opened for it."""
    reason = rig.beyond_limits(rate_ml_h=max(s.rate_ml_h for s in program.segments),
                               volume_ml=program.total_volume_ml, duration_s=program.duration_s)
    if reason:
        pytest.skip(reason)


@pytest.fixture
def controller_factory(request: pytest.FixtureRequest, rig_parts: RigParts,
                       journal_dir: Path) -> ControllerFactory:
    """Controllers for the rig's pumps. A program beyond the rig's limits is skipped (the
    pump never moves); `report=True` draws the run's report into the evidence folder."""
    parts = rig_parts

    def make(program: RateProgram, *, pump: int = 0, sensor: bool = True, report: bool = False,
             **settings: Any) -> InfusionController:
        skip_beyond_limits(parts.rig, program)
        fields: dict[str, Any] = {
            "journal_dir": journal_dir, "poll_s": parts.rig.poll.f,
            "pump_url": parts.urls[pump], "watchdog_s": parts.watchdog_s,
            "header_extra": {"rig": parts.rig.name, "test": request.node.nodeid}}
        fields.update(settings)
        ctl = InfusionController(parts.drivers[pump], program, RunSettings(**fields),
                                 clock=parts.clock,
                                 volume_sensor=_sensor(parts, pump) if sensor else None)
        if report:
            request.node.stash.setdefault(RENDER, []).append(ctl.run_id)
        return ctl

    return make


def _sensor(parts: RigParts, pump: int) -> VolumeSensor | None:
    if pump == 0:
        return parts.sensor
    return ModelBalance(parts.sim.pump(pump).model) if parts.sim is not None else None


@dataclass(frozen=True)
class Broker:
    url: str
    started: Any = None  # the Mosquitto this session started (tests.telemetry.broker)


@pytest.fixture
def broker(rig: Rig, tmp_path: Path) -> Iterator[Broker]:
    """The rig's broker, else a Mosquitto of this test's own on a free loopback port."""
    if rig.broker is not None:
        yield Broker(rig.broker)
        return
    from tests.telemetry.broker import MOSQUITTO, Mosquitto

    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (make system-deps)")
    mosquitto = Mosquitto(tmp_path / "mosquitto").start()
    try:
        yield Broker(mosquitto.url, mosquitto)
    finally:
        mosquitto.stop()


Measure = Callable[..., Measurement]


@pytest.fixture
def measure(request: pytest.FixtureRequest, hil_session: HilSession) -> Measure:
    """measure(name, value, units, low=None, high=None) -> Measurement. A value outside its
    limits fails the test when its body ends, with one line naming each such value."""
    node = request.node
    recorded = node.stash.setdefault(MEASURED, [])

    def record(name: str, value: Any, units: str = "", low: float | None = None,
               high: float | None = None) -> Measurement:
        if not isinstance(value, bool | int | float | str):
            value = float(value)  # numpy scalars and the like
        low, high = _limit(low), _limit(high)  # float noise (0.14004000000000003) dropped
        m = Measurement(name, value, units, low, high, Measurement.judge(value, low, high),
                        node.nodeid)
        recorded.append(m)
        node.user_properties.append((MEASUREMENT, encode(
            {**m.as_json(), "rig": hil_session.rig.name, "seq": len(recorded)})))
        return m

    return record


def _limit(value: float | None) -> float | None:
    return None if value is None else float(f"{float(value):.12g}")


@pytest.fixture
def hil_table(request: pytest.FixtureRequest) -> Callable[..., None]:
    """hil_table(table, row, column, text, ok=True, row_order=0, column_order=0): one cell
    of a table printed at the end of the session (the fault matrix)."""
    def cell(table: str, row: str, column: str, text: str, ok: bool = True, *,
             row_order: int = 0, column_order: int = 0) -> None:
        request.node.user_properties.append((CELL, encode(
            {"table": table, "row": row, "column": column, "text": text, "ok": ok,
             "row_order": row_order, "column_order": column_order,
             "test": request.node.nodeid})))

    return cell


# ---- outcome, collection of results, the session's end --------------------------------------

@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    result = yield  # a test that raised keeps its own failure
    failed = [m for m in item.stash.get(MEASURED, []) if not m.passed]
    if failed:
        pytest.fail(failure_line(failed), pytrace=False)
    return result


class Collector:
    """Gathers what the tests recorded (here, or in pytest-xdist workers: the teardown report
    carries every property the test's phases added) and writes it at the session's end."""

    def __init__(self, hil: HilSession) -> None:
        self.hil = hil

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "teardown" or not report.user_properties:
            return
        self.hil.measurements.extend(from_properties(report.user_properties, MEASUREMENT))
        self.hil.cells.extend(from_properties(report.user_properties, CELL))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.hil.report_dir is not None:
            evidence.write_measurements(self.hil.report_dir, self.hil.measurements)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        s = self.hil
        if not (s.measurements or s.cells or s.report_dir):
            return
        tr = terminalreporter
        tr.write_sep("=", f"HIL rig {s.rig.name}")
        failed = sum(1 for m in s.measurements if m.get("outcome") != "pass")
        tr.write_line(f"{len(s.measurements)} measurements, {failed} outside their limits")
        for line in evidence.render_tables(s.cells):
            tr.write_line(line)
        if s.report_dir is not None:
            tr.write_line(f"evidence: {s.report_dir} (measurements.json, junit.xml, runs/)")
