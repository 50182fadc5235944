"""Rig files (pumpctl/rig.py): the shipped ones load, and every mistake is one line naming
the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from pumpctl.plan.errors import ConfigError
from pumpctl.rig import load_rig

RIGS = Path(__file__).resolve().parents[2] / "configs" / "rigs"


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "rig.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def test_the_shipped_rigs_load() -> None:
    default = load_rig(RIGS / "sim-newera.yaml")
    assert (default.pump.sim, default.pump.link, default.pump.watchdog_s) == ("newera",
                                                                              "memory", 5)
    assert default.simulated and default.pump.pump_family == "newera"
    real = load_rig(RIGS / "ne1000-mtsics.example.yaml")
    assert real.pump.urls == ["newera:///dev/ttyUSB0?baud=19200&safe=5"]
    assert not real.simulated and real.balance is not None and not real.balance.simulated
    assert real.limits.max_duration is not None and real.limits.max_duration.f == 7200
    for name in ("sim-isco-d.yaml", "sim-vindum-vp.yaml"):  # format checked, kinds not
        rig = load_rig(RIGS / name, check_registered=False)
        assert rig.pump.family == "modbus" and rig.pump.sim == name[4:-5]


def test_an_unregistered_kind_or_scheme_is_one_line_naming_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\npump: {sim: nonesuch, syringe: bd-plastipak-60}\n")
    with pytest.raises(ConfigError) as err:
        load_rig(path)
    assert str(err.value).startswith(f"{path}: pump.sim: simulator kind 'nonesuch' is not "
                                     "registered (known: ")
    assert "newera" in str(err.value).rsplit("known: ", 1)[1]
    assert "\n" not in str(err.value)
    path = write(tmp_path, "name: x\npump: {url: [newera:///dev/a, 'newera+udp://h:1'], "
                           "syringe: bd-plastipak-60}\n")
    with pytest.raises(ConfigError, match=r"pump\.url\[1\]: pump URL 'newera\+udp://h:1': "
                                          r"unknown scheme 'newera\+udp'"):
        load_rig(path)
    assert load_rig(path, check_registered=False).pump.urls[1] == "newera+udp://h:1"


def test_the_older_sim_url_spelling_is_the_sim_field(tmp_path: Path) -> None:
    rig = load_rig(write(tmp_path, "name: x\npump: {url: 'sim:newera', syringe: "
                                   "bd-plastipak-60}\n"))
    assert rig.pump.sim == "newera" and rig.pump.url is None and rig.pump.urls == []


@pytest.mark.parametrize(("pump", "says"), [
    ("{syringe: bd-plastipak-60}", "pump: give either `sim: KIND`"),
    ("{sim: newera, url: 'newera:///dev/x', syringe: bd-plastipak-60}",
     "pump: give either `sim: KIND`"),
    ("{url: 'newera:///dev/x', watchdog: 5 s, syringe: bd-plastipak-60}",
     "pump: `watchdog` is for a simulated pump"),
    ("{url: 'newera:///dev/x', physics: {startup_ml: 1}, syringe: bd-plastipak-60}",
     "pump: `physics` is for a simulated pump"),
    ("{url: 'modbus+tcp://127.0.0.1:502', family: newera, syringe: bd-plastipak-60}",
     "pump: family 'newera' does not match the pump ('modbus')"),
    ("{url: ['newera:///dev/x', 'modbus+tcp://127.0.0.1:502'], syringe: bd-plastipak-60}",
     "pump: the URLs mix pump families (modbus, newera)"),
    ("{url: [], syringe: bd-plastipak-60}", "pump.url: 0 URLs: a rig drives 1-16 pumps"),
    ("{sim: newera, count: 0, syringe: bd-plastipak-60}", "pump.count: "),
    ("{sim: newera, link: serial, syringe: bd-plastipak-60}", "pump.link: "),
    ("{sim: newera, watchdog: 5, syringe: bd-plastipak-60}", "pump.watchdog: 5 has no unit"),
])
def test_a_bad_pump_entry_names_the_field(tmp_path: Path, pump: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_rig(write(tmp_path, f"name: x\npump: {pump}\n"), check_registered=False)
    assert says in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_broker_and_limits_are_checked(tmp_path: Path) -> None:
    base = "name: x\npump: {sim: newera, syringe: bd-plastipak-60}\n"
    with pytest.raises(ConfigError, match="broker: 'http://h': scheme 'http' is not mqtt://"):
        load_rig(write(tmp_path, base + "broker: 'http://h'\n"))
    with pytest.raises(ConfigError, match=r"limits\.max_volume: '-1 mL' must be greater than"):
        load_rig(write(tmp_path, base + "limits: {max_volume: -1 mL}\n"))
    rig = load_rig(write(tmp_path, base + "broker: mqtt://127.0.0.1:1883\n"
                                          "limits: {max_rate: 60 mL/h, max_duration: 1 h}\n"))
    assert rig.beyond_limits(rate_ml_h=52.5, volume_ml=35, duration_s=2400) is None
    assert rig.beyond_limits(rate_ml_h=63, volume_ml=35, duration_s=2400) == \
        "rig x: rate 63 mL/h is beyond limits.max_rate 60 mL/h"
    assert rig.beyond_limits(rate_ml_h=21, volume_ml=35, duration_s=6000) == \
        "rig x: duration 100 min is beyond limits.max_duration 60 min"
    assert rig.beyond_limits(rate_ml_h=21, volume_ml=61, duration_s=600) == \
        "rig x: volume 61 mL is more than the syringe holds (60 mL)"


def test_every_physics_parameter_has_limits() -> None:
    """A parameter added to the model without limits would let a rig divide by zero."""
    from dataclasses import fields

    from simulators.physics_params import PHYSICS_LIMITS, PhysicsParams

    assert set(PHYSICS_LIMITS) == {f.name for f in fields(PhysicsParams)}
    for name, (low, high) in PHYSICS_LIMITS.items():
        assert low <= getattr(PhysicsParams(), name) <= high, name  # the defaults are valid


@pytest.mark.parametrize(("physics", "says"), [
    ("{steps_per_rev: 0}", "physics.steps_per_rev: 0 is outside 1-1e+06"),
    ("{steps_per_rev: 1.5}", "physics.steps_per_rev: 1.5 is not a whole number"),
    ("{lead_pitch_mm: 0}", "physics.lead_pitch_mm: 0 is outside 0.05-20"),
    ("{ripple_fraction: -5}", "physics.ripple_fraction: -5 is outside 0-0.5"),
    ("{noise_ml: .nan}", "physics.noise_ml: "),
    ("{startup_ml: 1e300}", "physics.startup_ml: 1e+300 is outside 0-10"),
    ("{stall_pressure_kpa: -1}", "physics.stall_pressure_kpa: -1 is outside 1-10000"),
    ("{seed: -1}", "physics.seed: -1 is outside 0-4.29497e+09"),
])
def test_a_physics_value_the_model_cannot_take_is_refused(tmp_path: Path, physics: str,
                                                          says: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_rig(write(tmp_path, "name: x\npump: {sim: newera, syringe: bd-plastipak-60, "
                                 f"physics: {physics}}}\n"))
    assert says in str(err.value) and "\n" not in str(err.value), str(err.value)
