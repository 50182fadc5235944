"""The MT-SICS driver against the simulated balance, in virtual time over an in-memory pipe."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from pumpctl.clock import LoopClock, ManualClock, run
from pumpctl.drivers.balance.driver import MtSicsBalance
from pumpctl.drivers.balance.mtsics import BalanceRefused, BalanceTimeout
from pumpctl.drivers.sensors import VolumeSensor
from simulators.balance import BalanceSimulator, SimBalanceConfig, embedded_balance
from simulators.physics import PhysicsParams, SyringePumpModel

Scenario = Callable[[BalanceSimulator, MtSicsBalance, SyringePumpModel, LoopClock],
                    Awaitable[Any]]


def on_balance(scenario: Scenario, *, rate_ml_h: float = 5.0, **config: Any) -> Any:
    async def main() -> Any:
        clock = LoopClock()
        pump = SyringePumpModel(clock, params=PhysicsParams(ripple_fraction=0.0))
        pump.set_rate(rate_ml_h)
        async with embedded_balance(clock, lambda: pump.delivered_ml,
                                    SimBalanceConfig(**config)) as (sim, balance):
            return await scenario(sim, balance, pump, clock)
    return run(main(), virtual=True)


def test_weighs_what_left_the_line_times_density() -> None:
    async def scenario(sim: BalanceSimulator, balance: MtSicsBalance, pump: SyringePumpModel,
                       clock: LoopClock) -> None:
        pump.start()
        await clock.sleep(600)
        w = await balance.weigh_now()
        assert not w.stable  # 5 mL/h onto the pan: 1.4 mg a second
        assert w.unit == "g"
        assert w.grams == pytest.approx(0.998 * pump.delivered_ml, abs=1e-4)
        # 5/6 mL less the slack and the line compliance taken up at the start (~3 µL)
        assert w.grams == pytest.approx(0.998 * 5 / 6, abs=4e-3)

    on_balance(scenario)


def test_stable_reading_when_the_pump_stops_and_s_i_while_it_runs() -> None:
    async def scenario(sim: BalanceSimulator, balance: MtSicsBalance, pump: SyringePumpModel,
                       clock: LoopClock) -> None:
        pump.start()
        await clock.sleep(60)
        t0 = clock.monotonic()
        with pytest.raises(BalanceRefused) as info:
            await balance.weigh_stable()
        assert info.value.status == "I"
        assert clock.monotonic() - t0 == pytest.approx(3.0, abs=0.6)  # the balance gave up
        pump.stop()
        await clock.sleep(0.2)
        w = await balance.weigh_stable()  # waits for the settle time, then answers S S
        assert w.stable and w.grams == pytest.approx(0.998 * pump.delivered_ml, abs=1e-4)
        assert (await balance.weigh_now()).stable

    on_balance(scenario)


def test_zero_tare_reset_and_identification() -> None:
    async def scenario(sim: BalanceSimulator, balance: MtSicsBalance, pump: SyringePumpModel,
                       clock: LoopClock) -> None:
        await clock.sleep(2)
        with pytest.raises(BalanceRefused, match=r"'Z \+' to Z"):
            await balance.zero_stable()  # a 50 g beaker is far outside the zero range
        tare = await balance.tare_stable()
        assert tare.grams == pytest.approx(50.0)
        assert (await balance.weigh_now()).grams == pytest.approx(0.0, abs=1e-4)
        await balance.clear_tare()
        assert (await balance.weigh_now()).grams == pytest.approx(50.0, abs=1e-4)
        assert (await balance.tare_now()).stable
        assert await balance.reset() == "0000000001"
        assert (await balance.weigh_now()).grams == pytest.approx(50.0, abs=1e-4)
        assert await balance.serial_number() == "0000000001"
        assert await balance.model() == "pumpctl-sim 220.0000 g"
        pump.start()
        await clock.sleep(30)
        assert not (await balance.tare_now()).stable  # TI D while liquid is arriving

    on_balance(scenario, container_g=50.0)


def test_zero_immediately_inside_the_range() -> None:
    async def scenario(sim: BalanceSimulator, balance: MtSicsBalance, pump: SyringePumpModel,
                       clock: LoopClock) -> None:
        await clock.sleep(2)
        assert await balance.zero_now() is True
        await balance.zero_stable()
        pump.start()
        await clock.sleep(30)
        assert await balance.zero_now() is False  # ZI D
        assert (await balance.weigh_now()).grams == pytest.approx(0.0, abs=2e-4)

    on_balance(scenario, container_g=1.0)


def test_unknown_commands_and_parameters() -> None:
    async def scenario(sim: BalanceSimulator, balance: MtSicsBalance, pump: SyringePumpModel,
                       clock: LoopClock) -> list[bytes]:
        return [await balance.request("SIR2"), await balance.request("SI 5"),
                await balance.request("I4")]

    assert on_balance(scenario) == [b"ES", b"EL", b'I4 A "0000000001"']


def test_a_silent_balance_times_out_and_a_late_reply_is_never_the_next_answer() -> None:
    async def scenario(sim: BalanceSimulator, balance: MtSicsBalance, pump: SyringePumpModel,
                       clock: LoopClock) -> None:
        sim.muted = True
        with pytest.raises(BalanceTimeout, match="no reply to SI within 2 s"):
            await balance.weigh_now()
        sim.muted = False
        object.__setattr__(sim.config, "reply_delay_s", 2.5)  # slower than the timeout
        with pytest.raises(BalanceTimeout):
            await balance.serial_number()
        object.__setattr__(sim.config, "reply_delay_s", 0.05)
        assert await balance.model() == "pumpctl-sim 220.0000 g"  # not the late I4 reply

    on_balance(scenario)


def test_noise_resolution_and_evaporation() -> None:
    async def scenario(sim: BalanceSimulator, balance: MtSicsBalance, pump: SyringePumpModel,
                       clock: LoopClock) -> list[float]:
        readings = []
        for _ in range(200):
            readings.append((await balance.weigh_now()).grams)
            await clock.sleep(30)
        return readings

    readings = on_balance(scenario, rate_ml_h=0.0, noise_g=0.0005, evaporation_g_min=0.001)
    steps = [round(r / 1e-4) * 1e-4 for r in readings]
    assert readings == pytest.approx(steps, abs=1e-9)  # on the 0.1 mg grid
    residual = [r + 0.001 * 0.5 * i for i, r in enumerate(readings)]  # evaporation put back
    mean = sum(residual) / len(residual)
    sd = math.sqrt(sum((r - mean) ** 2 for r in residual) / len(residual))
    assert abs(mean) < 2e-4
    assert 0.0003 < sd < 0.0008
    # 100 min at 1 mg/min evaporated
    assert readings[-1] == pytest.approx(-0.0995, abs=0.003)


def test_the_balance_is_a_volume_sensor() -> None:
    async def scenario(sim: BalanceSimulator, balance: MtSicsBalance, pump: SyringePumpModel,
                       clock: LoopClock) -> None:
        sensor = balance.volume_sensor(0.998)
        assert isinstance(sensor, VolumeSensor)
        pump.start()
        await clock.sleep(120)
        start = pump.delivered_ml
        await sensor.zero()
        await clock.sleep(3600)
        assert await sensor.read_ml() == pytest.approx(pump.delivered_ml - start, abs=2e-4)

    on_balance(scenario, container_g=40.0)


def test_stability_needs_the_whole_settle_time() -> None:
    clock = ManualClock()
    sim = BalanceSimulator(clock, lambda: 0.0)
    assert not sim.stable()
    clock.now = 0.6
    assert not sim.stable()
    clock.now = 1.0
    assert sim.stable()
