"""A controller process streaming telemetry in real time, for the Last Will test to kill.

    python -m tests.telemetry.run_controller MQTT_URL SPOOL_DIR RUNS_DIR
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from pumpctl.clock import LoopClock
from pumpctl.plan.compile import compile_plan_file
from pumpctl.run.controller import InfusionController
from pumpctl.telemetry.runtime import telemetry_for_run
from simulators.newera.embedded import embedded_newera

PLAN = Path(__file__).resolve().parents[2] / "configs" / "plans" / "ketamine-0.5mgkg-40min.yaml"


async def main(url: str, spool_dir: Path, runs_dir: Path) -> None:
    clock = LoopClock()
    program = compile_plan_file(PLAN, weight_kg=70)
    async with embedded_newera(clock) as (_, driver):
        controller = InfusionController(driver, program, journal_dir=runs_dir, clock=clock,
                                        poll_s=0.2)
        async with telemetry_for_run(url, site="lab", pump_id="p9", spool_dir=spool_dir) as sink:
            controller.add_sink(sink)
            await controller.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])))
