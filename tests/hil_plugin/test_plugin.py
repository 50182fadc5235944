"""The HIL pytest plugin (hil_tests/plugin.py), run as a user runs it: pytest in a separate
process on a directory of scenario files, with `--rig`, `$PUMPCTL_RIG`, `--hil-report` and
pytest-xdist, and what it leaves behind checked file by file."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hil_tests.kinds import KINDS

REPO = Path(__file__).resolve().parents[2]
RIGS = REPO / "configs" / "rigs"

pytest_plugins = ["pytester"]

INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""
CONFTEST = 'pytest_plugins = ["hil_tests.plugin"]\n'

# Scenarios of the kind hil_tests/ holds, small enough to run in a second.
SCENARIOS = '''
import asyncio

import pytest

from pumpctl.clock import VirtualTimeLoop
from tests.controller.programs import make_program


def test_measured_within_limits(measure):
    m = measure("volume", 35.0, "mL", low=34.99, high=35.01)
    assert m.outcome == "pass"


def test_measured_outside_limits(measure):
    measure("volume", 36.5, "mL", low=34.99, high=35.01)
    measure("dose", 35.0, "mg", high=35.5)  # recorded although the first one failed
    measure("note", "no limits", "")


async def test_a_short_run_on_the_rig(rig, controller_factory, measure, hil_table):
    assert isinstance(asyncio.get_running_loop(), VirtualTimeLoop)  # a simulated rig
    ctl = controller_factory(make_program([(60.0, 52.5)]), report=True)
    result = await ctl.run()
    measure("delivered volume", result.delivered_volume_ml, "mL", low=0.874, high=0.876)
    hil_table("a table", "row one", "column b", f"{result.outcome}", column_order=2)
    hil_table("a table", "row one", "column a", "first", column_order=1)


async def test_faults_come_from_the_simulator(sim, controller_factory):
    sim.inject("occlusion@20s")
    result = await controller_factory(make_program([(60.0, 52.5)])).run()
    assert result.outcome == "faulted" and not sim.pump().moving


def test_the_kind_follows_the_rig(sim_kind, rig):
    # No --rig: the scenario runs on every simulator kind, the default rig's among them.
    from hil_tests.kinds import KINDS

    assert sim_kind.name in KINDS and rig.pump.sim in KINDS


def test_the_broker_listens_on_loopback(broker):
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(broker.url)
    assert url.scheme == "mqtt" and url.hostname == "127.0.0.1"
    socket.create_connection((url.hostname, url.port), timeout=10).close()


@pytest.mark.hardware
def test_only_on_hardware(rig):
    raise AssertionError("never on a simulated rig")
'''


@pytest.fixture
def hil(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.delenv(RIG_ENV, raising=False)
    pytester.makefile(".ini", pytest=INI)
    pytester.makeconftest(CONFTEST)
    return pytester


RIG_ENV = "PUMPCTL_RIG"


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", *args)


def rig_file(pytester: pytest.Pytester, name: str, body: str) -> Path:
    path = pytester.path / f"{name}.yaml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def test_report_folder_measurements_junit_runs_and_tables(hil: pytest.Pytester) -> None:
    """The default rig (sim-newera) under pytest-xdist: measurements from both workers in one
    measurements.json, junit.xml from pytest's own junitxml, each run's journal, the pictures
    a test asked for, and the table printed at the end."""
    hil.makepyfile(test_scenarios=SCENARIOS)
    result = run(hil, "-n", "2", "--hil-report", "evidence", "-rs")
    kinds = len(KINDS)  # the sim_kind scenario runs once per kind
    result.assert_outcomes(passed=4 + kinds, failed=1, skipped=1)
    out = result.stdout.str()
    # A failing measurement fails its test with one line naming the value and the limits.
    result.stdout.re_match_lines([r".*measurement failed: volume = 36\.5 mL, outside "
                                  r"34\.99\.\.35\.01 mL$"])
    assert "rig sim-newera is simulated: this test needs hardware" in out
    assert "5 measurements, 1 outside their limits" in out
    # The table: columns in their given order, whichever worker recorded them.
    result.stdout.re_match_lines([r"^a table$", r"^\s+column a\s+column b$",
                                  r"^row one\s+first\s+completed$"])
    evidence = hil.path / "evidence"
    measured = json.loads((evidence / "measurements.json").read_text())
    by_name = {m["name"]: m for m in measured if "within" not in m["test"]}
    assert by_name["volume"] == {
        "name": "volume", "value": 36.5, "units": "mL", "low": 34.99, "high": 35.01,
        "outcome": "fail", "rig": "sim-newera",
        "test": "test_scenarios.py::test_measured_outside_limits"}
    assert by_name["dose"]["outcome"] == "pass" and by_name["dose"]["low"] is None
    assert by_name["note"]["value"] == "no limits"
    assert by_name["delivered volume"]["test"] == "test_scenarios.py::test_a_short_run_on_the_rig"
    assert len(measured) == 5
    suite = ET.parse(evidence / "junit.xml").getroot()
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert len(cases) == 6 + kinds
    assert cases["test_measured_outside_limits"].find("failure") is not None
    props = [p.get("name") for p in cases["test_measured_within_limits"].iter("property")]
    assert props == ["hil_measurement"]
    runs = evidence / "runs"
    short = runs / "test_scenarios.py-test_a_short_run_on_the_rig"
    journal, = short.glob("*.jsonl")
    assert {p.suffix for p in short.iterdir()} == {".jsonl", ".png", ".html"}
    header = json.loads(journal.read_text().splitlines()[0])
    assert header["rig"] == "sim-newera" and header["pump_url"] == "sim:newera+memory"
    faulted = runs / "test_scenarios.py-test_faults_come_from_the_simulator"
    assert [p.suffix for p in faulted.iterdir()] == [".jsonl"]  # no picture asked for


def test_a_hardware_rig_is_never_opened_by_sim_only_tests(hil: pytest.Pytester) -> None:
    """Every test here needs a simulator (the `sim` or `sim_kind` fixture, or the marker):
    on a hardware rig all of them skip, and the pump's port (which does not exist, so any
    attempt to open it would be an error) is never opened."""
    rig = rig_file(hil, "bench", """\
        name: bench
        pump:
          url: newera:///nonexistent/pumpctl-test-tty?safe=5
          syringe: bd-plastipak-60
        balance:
          url: mtsics:///nonexistent/pumpctl-test-balance
        """)
    hil.makepyfile(test_scenarios='''
        import pytest

        def test_with_the_simulator(sim, driver):
            raise AssertionError("ran")

        def test_by_kind(sim_kind):
            raise AssertionError("ran")

        @pytest.mark.sim_only
        async def test_marked(controller_factory, balance):
            raise AssertionError("ran")

        def test_the_rig_itself(rig):
            assert not rig.simulated and rig.pump.urls[0].startswith("newera:///nonexistent")
        ''')
    result = run(hil, "--rig", str(rig), "-rs")
    result.assert_outcomes(passed=1, skipped=3)
    assert result.stdout.str().count("rig bench is hardware") == 3
    assert "hardware (newera:///nonexistent/pumpctl-test-tty?safe=5)" in result.stdout.str()


@pytest.mark.parametrize(("body", "says"), [
    ("name: x\npump: {sim: newera, syringe: bd-plastipak-60, colour: red}\n",
     "pump.colour: unknown key"),
    ("name: x\npump: {sim: newera, syringe: bd-plastipak-60}\nlimits: {max_rate: 5}\n",
     "limits.max_rate: 5 has no unit"),
    ("name: x\npump: {url: 'newera:///dev/ttyUSB0', link: pty, syringe: bd-plastipak-60}\n",
     "pump: `link` is for a simulated pump"),
])
def test_a_bad_rig_file_is_one_line_naming_the_field(hil: pytest.Pytester, body: str,
                                                     says: str) -> None:
    rig = hil.path / "bad.yaml"
    rig.write_text(body, encoding="utf-8")
    hil.makepyfile(test_nothing="def test_nothing(): pass\n")
    result = run(hil, "--rig", str(rig))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.strip()]
    assert len(errors) == 1 and errors[0].startswith(f"ERROR: --rig: {rig}: {says}"), errors
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_a_report_folder_that_cannot_be_made_is_one_line(hil: pytest.Pytester) -> None:
    taken = hil.path / "evidence"
    taken.write_text("a file, not a folder", encoding="utf-8")
    hil.makepyfile(test_nothing="def test_nothing(): pass\n")
    result = run(hil, "--hil-report", str(taken))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.strip()]
    assert errors == [f"ERROR: --hil-report {taken}: cannot make a directory there "
                      "(File exists)"], errors


def test_a_missing_rig_file_from_the_environment(hil: pytest.Pytester,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RIG_ENV, str(hil.path / "nowhere.yaml"))
    hil.makepyfile(test_nothing="def test_nothing(): pass\n")
    result = run(hil)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.lines[0].startswith(f"ERROR: {RIG_ENV}: {hil.path / 'nowhere.yaml'}")
    assert len([line for line in result.stderr.lines if line.strip()]) == 1


def test_rig_from_option_environment_or_default(hil: pytest.Pytester,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    hil.makepyfile(test_which='''
        import os

        from pumpctl.drivers.balance.driver import BalanceVolumeSensor


        def test_which(rig):
            assert rig.name == os.environ["EXPECTED_RIG"], rig.name


        async def test_the_balance(balance, volume_sensor):
            assert (await balance.weigh_now()).grams >= 50  # the simulated beaker
            assert isinstance(volume_sensor, BalanceVolumeSensor)  # the controller's sensor
        ''')
    monkeypatch.setenv("EXPECTED_RIG", "sim-newera")
    result = run(hil, "-rs")  # the default
    result.assert_outcomes(passed=1, skipped=1)
    assert "rig sim-newera has no balance" in result.stdout.str()
    monkeypatch.setenv(RIG_ENV, str(RIGS / "sim-newera-accuracy.yaml"))
    monkeypatch.setenv("EXPECTED_RIG", "sim-newera-accuracy")
    run(hil).assert_outcomes(passed=2)  # $PUMPCTL_RIG, with its simulated balance
    monkeypatch.setenv("EXPECTED_RIG", "sim-newera")
    # --rig wins. (`--rig=FILE`: pytest guesses its root directory from the arguments before
    # it knows the option, and the repository's rig file lies outside this test's directory.)
    run(hil, f"--rig={RIGS / 'sim-newera.yaml'}").assert_outcomes(passed=1, skipped=1)


def test_an_unregistered_simulator_kind_skips_with_the_reason(hil: pytest.Pytester) -> None:
    rig = rig_file(hil, "future", """\
        name: future
        pump: {sim: nonesuch, syringe: bd-plastipak-60}
        """)
    hil.makepyfile(test_scenarios='''
        def test_on_the_rig(driver):
            raise AssertionError("ran")

        def test_by_kind(sim_kind):
            raise AssertionError("ran")

        def test_no_rig_needed():
            pass
        ''')
    result = run(hil, "--rig", str(rig), "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    assert result.stdout.str().count(
        "rig future: pump.sim: simulator kind 'nonesuch' is not registered (known: ") == 2
