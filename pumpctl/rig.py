"""Rig files (`configs/rigs/*.yaml`): which pumps, balance and broker a bench session uses.

One file serves `pumpctl accuracy run --rig` and the HIL suite (`pytest hil_tests --rig`), so a
bench engineer describes the bench once. A rig names its pump either as a simulator kind
(`sim: newera`, `sim: isco-d`: started inside the process that uses the rig, in virtual time
where it can) or by URL (`url: newera:///dev/ttyUSB0?safe=5`, or a list of URLs for several
pumps), the syringe loaded, and optionally a balance (`sim:mtsics`, `mtsics:///dev/ttyUSB1`,
`mtsics+tcp://HOST:PORT`), a broker (`mqtt://HOST:PORT`) and limits: what the bench lets a
scenario ask of it (a small syringe, a slow pump, a session that may not last all day).
Simulated parts take their physics and balance settings from the file, so a rig can turn on
start-up compliance or thread irregularity without changing any default.

A simulator kind or URL scheme nobody has registered is caught by `load_rig` as a one-line
error naming `pump.sim` or `pump.url`; `check_registered=False` leaves that to the caller (the
pytest plugin skips, with that line as the reason, rather than failing a whole session).
"""

from __future__ import annotations

from dataclasses import fields
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from pumpctl.plan.errors import ConfigError, Problem
from pumpctl.plan.fields import Duration, Rate, StrictModel, Volume, load_cached, quantity
from pumpctl.plan.library import Syringe, load_syringes
from pumpctl.units import Kind, Measured

SIM_SCHEME = "sim:"  # `url: sim:newera` is an older spelling of `sim: newera`
SIM_BALANCE = "sim:mtsics"
FAMILIES = ("newera", "modbus")  # protocol families: what a URL scheme starts with

Density = Annotated[Measured, quantity(Kind.DENSITY)]
MassRate = Annotated[Measured, quantity(Kind.MASS_RATE, positive=False)]
Mass = Annotated[Measured, quantity(Kind.DOSE)]  # a mass; mg is the canonical unit
MassOrZero = Annotated[Measured, quantity(Kind.DOSE, positive=False)]
Link = Literal["memory", "pty", "tcp"]


def _default(kind: Kind, value: str) -> Any:
    return Field(default_factory=lambda: Measured(kind, Fraction(value)))


class SimBalance(StrictModel):
    """How the simulated balance behaves (ignored for a real balance)."""

    resolution: Mass = _default(Kind.DOSE, "0.1")  # mg
    noise: MassOrZero = _default(Kind.DOSE, "0")
    evaporation: MassRate = _default(Kind.MASS_RATE, "0")
    container: MassOrZero = _default(Kind.DOSE, "0")
    seed: int = 0


class BalanceSpec(StrictModel):
    url: str = Field(min_length=1, max_length=300)
    density: Density = _default(Kind.DENSITY, "0.998")
    # Evaporation from the beaker measured before the run (pump stopped): added back by the
    # analysis. The simulated balance's own evaporation is `sim.evaporation`.
    evaporation: MassRate = _default(Kind.MASS_RATE, "0")
    sim: SimBalance = Field(default_factory=SimBalance)

    @property
    def simulated(self) -> bool:
        return self.url == SIM_BALANCE

    def sim_config(self) -> Any:
        """The simulated balance's settings (simulators.balance.SimBalanceConfig)."""
        from simulators.balance import SimBalanceConfig

        s = self.sim
        return SimBalanceConfig(
            density_g_ml=self.density.f, resolution_g=s.resolution.f / 1000,
            noise_g=s.noise.f / 1000, evaporation_g_min=s.evaporation.f / 1000,
            container_g=s.container.f / 1000, seed=s.seed)


def url_family(url: str) -> str:
    """The protocol family a pump URL's scheme belongs to (`modbus+rtu+tcp` -> `modbus`); a
    plain path is a New Era port, as everywhere in pumpctl."""
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    return scheme.split("+", 1)[0] if scheme else "newera"


def kind_family(kind: str) -> str:
    """The family of a simulator kind: a Modbus kind is named after its register map
    (configs/modbus/NAME.yaml); any other kind is its own family (`newera`)."""
    from pumpctl.plan.fields import default_configs_dir

    return "modbus" if (default_configs_dir() / "modbus" / f"{kind}.yaml").is_file() else kind


class PumpSpec(StrictModel):
    sim: str | None = Field(default=None, min_length=1, max_length=40)
    url: str | list[str] | None = None
    family: Literal["newera", "modbus"] | None = None  # default: from `sim` or the URL
    syringe: str
    contents: Volume | None = None  # liquid in the syringe at the start (default: capacity)
    # Simulated pumps only: how many on the line, how the driver reaches them, the pumps'
    # own watchdog (the New Era safe mode a real URL asks for with `safe=N`).
    count: int = Field(default=1, ge=1, le=16)
    link: Link = "memory"
    watchdog: Duration | None = None
    # The pump profile (configs/pumps/NAME.yaml) the HIL scenarios compile plans for
    # (default: the one each plan names).
    profile: str | None = Field(default=None, min_length=1, max_length=80)
    # Simulated pump only: simulators.physics.PhysicsParams fields (start-up compliance...).
    physics: dict[str, float] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _urls(cls, value: str | list[str] | None) -> str | list[str] | None:
        for url in [value] if isinstance(value, str) else (value or []):
            if not url.strip() or len(url) > 300:
                raise ValueError(f"{url!r} is not a pump URL (1-300 characters)")
        if isinstance(value, list) and not 1 <= len(value) <= 16:
            raise ValueError(f"{len(value)} URLs: a rig drives 1-16 pumps")
        return value

    @field_validator("physics")
    @classmethod
    def _known_physics(cls, value: dict[str, float]) -> dict[str, float]:
        from simulators.physics_params import PhysicsParams, physics_problem

        known = {f.name for f in fields(PhysicsParams)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown physics parameter {unknown[0]!r} (known: "
                             f"{', '.join(sorted(known))})")
        for name, number in value.items():
            problem = physics_problem(name, number)
            if problem is not None:
                raise ValueError(problem)
        return value

    @model_validator(mode="before")
    @classmethod
    def _old_sim_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and "sim" not in data and isinstance(data.get("url"), str) \
                and data["url"].startswith(SIM_SCHEME):
            data = {**data, "sim": data["url"][len(SIM_SCHEME):]}
            del data["url"]
        return data

    @model_validator(mode="after")
    def _sim_or_url(self) -> PumpSpec:
        if (self.sim is None) == (self.url is None):
            raise ValueError("give either `sim: KIND` (a simulated pump) or `url:` (a real one)")
        if self.url is not None:
            for name in ("count", "link", "watchdog"):
                if name in self.model_fields_set:
                    raise ValueError(f"`{name}` is for a simulated pump; a real pump's URL says "
                                     "how to reach it (and `safe=N` arms its watchdog)")
            if self.physics:
                raise ValueError("`physics` is for a simulated pump")
        derived = kind_family(self.sim) if self.sim is not None else self._url_families()
        if self.family is not None and derived in FAMILIES and derived != self.family:
            raise ValueError(f"family {self.family!r} does not match the pump ({derived!r})")
        return self

    def _url_families(self) -> str:
        families = {url_family(u) for u in self.urls}
        if len(families) > 1:
            raise ValueError(f"the URLs mix pump families ({', '.join(sorted(families))})")
        return families.pop()

    @property
    def simulated(self) -> bool:
        return self.sim is not None

    @property
    def urls(self) -> list[str]:
        """The real pumps' URLs (empty for a simulated rig)."""
        return [self.url] if isinstance(self.url, str) else list(self.url or [])

    @property
    def pump_family(self) -> str:
        if self.family is not None:
            return self.family
        return kind_family(self.sim) if self.sim is not None else url_family(self.urls[0])

    @property
    def watchdog_s(self) -> int | None:
        return None if self.watchdog is None else max(1, round(self.watchdog.f))


class RigLimits(StrictModel):
    """What the bench lets one run ask of it; a scenario beyond them is skipped, naming it."""

    max_rate: Rate | None = None
    max_volume: Volume | None = None
    max_duration: Duration | None = None


class Rig(StrictModel):
    name: str = Field(min_length=1, max_length=80)
    description: str = Field(default="", max_length=2000)
    pump: PumpSpec
    balance: BalanceSpec | None = None
    # Telemetry broker for the scenarios that publish; none: the HIL suite starts its own
    # Mosquitto on a free loopback port.
    broker: str | None = Field(default=None, min_length=1, max_length=300)
    limits: RigLimits = Field(default_factory=RigLimits)
    poll: Duration = _default(Kind.DURATION, "1")
    source: str = ""

    @field_validator("broker")
    @classmethod
    def _broker(cls, value: str | None) -> str | None:
        if value is not None:
            from pumpctl.telemetry.errors import TelemetryError
            from pumpctl.telemetry.urls import parse_mqtt_url

            try:
                parse_mqtt_url(value)
            except TelemetryError as exc:
                raise ValueError(str(exc).removeprefix("--mqtt ")) from None
        return value

    @property
    def simulated(self) -> bool:
        """Everything in software: the HIL suite runs it in virtual time."""
        return self.pump.simulated and (self.balance is None or self.balance.simulated)

    def syringe(self) -> Syringe:
        table = load_syringes()
        if self.pump.syringe not in table:
            raise ConfigError([Problem("pump.syringe", f"{self.pump.syringe!r} is not in the "
                                       "syringe table (configs/syringes.yaml)")], self.source)
        return table[self.pump.syringe]

    def physics(self) -> Any:
        from simulators.physics import PhysicsParams

        params: dict[str, Any] = dict(self.pump.physics)
        for name in ("seed", "steps_per_rev", "thread_points_per_rev"):
            if name in params:
                params[name] = int(params[name])
        return PhysicsParams(**params)

    def unregistered(self) -> Problem | None:
        """What this process cannot drive: a simulator kind or URL scheme nobody registered
        (pumpctl.drivers.open), as a problem naming the field; None when all is known."""
        from pumpctl.drivers.open import PumpUrlError, parse_pump_url, simulator_kinds

        if self.pump.sim is not None:
            kinds = simulator_kinds()
            if self.pump.sim not in kinds:
                return Problem("pump.sim", f"simulator kind {self.pump.sim!r} is not registered "
                               f"(known: {', '.join(sorted(kinds))})")
            return None
        for i, url in enumerate(self.pump.urls):
            try:
                parse_pump_url(url)
            except PumpUrlError as exc:
                field = "pump.url" if isinstance(self.pump.url, str) else f"pump.url[{i}]"
                return Problem(field, str(exc))
        return None

    def beyond_limits(self, *, rate_ml_h: float, volume_ml: float,
                      duration_s: float) -> str | None:
        """Why a run of this size may not run on this rig (None: it may)."""
        lim = self.limits
        checks = [(lim.max_rate, rate_ml_h, "rate", "mL/h"),
                  (lim.max_volume, volume_ml, "volume", "mL"),
                  (lim.max_duration, duration_s / 60, "duration", "min")]
        for limit, value, what, unit in checks:
            if limit is None:
                continue
            top = limit.f / 60 if what == "duration" else limit.f
            if value > top + 1e-9:
                return (f"rig {self.name}: {what} {value:g} {unit} is beyond limits.max_{what} "
                        f"{top:g} {unit}")
        contents = self.pump.contents.f if self.pump.contents else self.syringe().capacity_ml
        if volume_ml > contents + 1e-9:
            return (f"rig {self.name}: volume {volume_ml:g} mL is more than the syringe holds "
                    f"({contents:g} mL)")
        return None


def load_rig(path: str | Path, *, check_registered: bool = True) -> Rig:
    """A rig file, checked (one-line errors naming the field)."""
    file = Path(path)
    rig = load_cached(Rig, file).model_copy(update={"source": str(file)})
    if check_registered and (problem := rig.unregistered()) is not None:
        raise ConfigError([problem], str(file))
    return rig
