"""The checks of a Modbus pump map that one entry cannot make alone: entries referring to
each other.

Registers of one kind that overlap, a type that does not fit its kind or address, bits and
enumeration keys outside the type, an operation naming a register that does not exist, or
one that cannot be written (or read back) the way the operation needs. Each failure is one
`MapError` line naming the map, the entry and the problem.
"""

from __future__ import annotations

import itertools

from pumpctl.drivers.base import PumpState
from pumpctl.drivers.modbus.mapmodel import (
    MAX_ADDRESS,
    NOT_SUPPORTED,
    RATE_UNITS,
    Access,
    MapError,
    PumpMap,
    Register,
    RegisterKind,
    SetValue,
    ValueType,
    Write,
)


class MapChecker:
    """The checks a field-by-field model cannot make: entries that refer to each other."""

    def __init__(self, pump_map: PumpMap) -> None:
        self.map = pump_map

    def fail(self, entry: str, problem: str) -> MapError:
        return MapError(self.map.name, entry, problem)

    def run(self) -> None:
        self.registers()
        self.blocks()
        self.operations()

    def registers(self) -> None:
        by_kind: dict[RegisterKind, list[Register]] = {}
        for reg in self.map.registers.values():
            entry = f"registers.{reg.name}"
            vt = reg.value_type
            if reg.kind.is_bit and vt is not ValueType.BOOL:
                raise self.fail(entry, f"type {vt.value} on a {reg.kind.value}, which holds "
                                "one bit (use bool)")
            if not reg.kind.is_bit and vt is ValueType.BOOL:
                raise self.fail(entry, f"type bool on a {reg.kind.value} register (16 bits: "
                                "use u16)")
            if reg.span.stop - 1 > MAX_ADDRESS:
                raise self.fail(entry, f"type {vt.value} needs {vt.words} registers but "
                                f"address {reg.address} is the last one ({MAX_ADDRESS})")
            if not reg.kind.writable and reg.access is not Access.R:
                raise self.fail(entry, f"access {reg.access.value} on a {reg.kind.value}, "
                                "which is read-only")
            if reg.scale <= 0 or (reg.scale != 1 and vt in (ValueType.F32, ValueType.BOOL)):
                raise self.fail(entry, f"scale {reg.scale:g}: must be > 0, and 1 for "
                                f"{vt.value} (scale applies to integer types)")
            limits = vt.int_range
            for key in reg.enum:
                if limits is None:
                    raise self.fail(entry, f"enum on an f32 register (key {key})")
                if not limits[0] <= key <= limits[1]:
                    raise self.fail(entry, f"enum key {key} is outside {vt.value} "
                                    f"({limits[0]}-{limits[1]})")
            for bit in reg.bits:
                if vt in (ValueType.F32, ValueType.BOOL) or not 0 <= bit < vt.bit_count:
                    raise self.fail(entry, f"bit {bit} is outside {vt.value} "
                                    f"(bits 0-{vt.bit_count - 1} of an integer type)")
            if reg.min is not None and reg.max is not None and reg.min > reg.max:
                raise self.fail(entry, f"min {reg.min:g} is above max {reg.max:g}")
            by_kind.setdefault(reg.kind, []).append(reg)
        for kind, regs in by_kind.items():
            regs.sort(key=lambda r: r.address)
            for before, after in itertools.pairwise(regs):
                if after.address < before.span.stop:
                    raise self.fail(f"registers.{after.name}", f"{kind.value} address "
                                    f"{after.address} overlaps register {before.name} "
                                    f"({before.span.start}-{before.span.stop - 1})")

    def blocks(self) -> None:
        for i, block in enumerate(self.map.blocks):
            for reg in self.map.registers.values():
                if reg.kind is block.kind and reg.address in block \
                        and reg.span.stop - 1 > block.end:
                    raise self.fail(f"blocks[{i}]", f"ends at {block.end} inside register "
                                    f"{reg.name} ({reg.address}-{reg.span.stop - 1})")

    # -- operations --

    def ref(self, entry: str, name: str | None, *, write: bool = False, read: bool = False,
            numeric: bool = False, bit: bool | None = None) -> Register | None:
        """The register an operation names, checked for what the operation does with it."""
        if name is None:
            return None
        reg = self.map.registers.get(name)
        if reg is None:
            known = ", ".join(sorted(self.map.registers))
            known = known if len(known) <= 160 else known[:157] + "..."
            raise self.fail(entry, f"unknown register {name!r} (known: {known})")
        if write and not reg.writable:
            raise self.fail(entry, f"register {name} ({reg.kind.value}, access "
                            f"{reg.access.value}) cannot be written")
        if read and not reg.readable:
            raise self.fail(entry, f"register {name} (access {reg.access.value}) cannot be "
                            "read back (access must be r or rw)")
        if numeric and reg.kind.is_bit:
            raise self.fail(entry, f"register {name} is a {reg.kind.value}; a number is needed")
        if bit is True and not reg.kind.is_bit:
            raise self.fail(entry, f"register {name} is a {reg.kind.value} register; a coil "
                            "or discrete input is needed")
        return reg

    def fits(self, entry: str, reg: Register, value: float) -> None:
        vt = reg.value_type
        limits = vt.int_range
        wire = value * reg.scale
        if limits is not None and not (wire == int(wire) and limits[0] <= wire <= limits[1]):
            raise self.fail(entry, f"value {value:g} does not fit register {reg.name} "
                            f"({vt.value}, scale {reg.scale:g})")

    def write(self, entry: str, w: Write | None) -> None:
        if w is not None:
            reg = self.ref(f"{entry}.register", w.register, write=True)
            assert reg is not None
            self.fits(f"{entry}.value", reg, w.value)

    def setting(self, entry: str, s: SetValue | None, units: tuple[str, ...]) -> None:
        if s is None:
            return
        self.ref(f"{entry}.register", s.register, write=True, numeric=True)
        self.ref(f"{entry}.readback", s.readback_register, read=True, numeric=True)
        if s.unit is not None and s.unit not in units:
            raise self.fail(f"{entry}.unit", f"{s.unit!r} is not one of {', '.join(units)}")
        for i, w in enumerate(s.select):
            self.write(f"{entry}.select[{i}]", w)

    def operations(self) -> None:
        ops = self.map.operations
        e = "operations"
        if ops.identify is not None:
            ident = ops.identify
            if ident.model is None and ident.model_text is None and not ident.firmware_registers:
                raise self.fail(f"{e}.identify", "names no register and no model_text; write "
                                f"`identify: {NOT_SUPPORTED}`")
            self.ref(f"{e}.identify.model", ident.model, read=True)
            for name in ident.firmware_registers:
                self.ref(f"{e}.identify.firmware", name, read=True)
        self.setting(f"{e}.rate", ops.rate, tuple(RATE_UNITS))
        if ops.rate.unit is None:
            raise self.fail(f"{e}.rate.unit", f"missing (one of {', '.join(RATE_UNITS)})")
        self.ref(f"{e}.rate_actual", ops.rate_actual, read=True, numeric=True)
        self.setting(f"{e}.volume_target", ops.volume_target, ("mL",))
        self.setting(f"{e}.diameter", ops.diameter, ("mm",))
        if ops.direction is not None:
            d = ops.direction
            reg = self.ref(f"{e}.direction.register", d.register, write=True, read=True)
            assert reg is not None
            if d.infuse == d.withdraw:
                raise self.fail(f"{e}.direction", f"infuse and withdraw are both {d.infuse}")
            self.fits(f"{e}.direction.infuse", reg, d.infuse)
            self.fits(f"{e}.direction.withdraw", reg, d.withdraw)
        for name in ("run", "run_with_target", "stop", "pause", "acknowledge",
                     "clear_counters"):
            self.write(f"{e}.{name}", getattr(ops, name))
        if ops.run_with_target is not None and ops.volume_target is None:
            raise self.fail(f"{e}.run_with_target", "given, but volume_target is not supported")
        state = ops.state
        if (state.register is None) == (state.running is None):
            raise self.fail(f"{e}.state", "needs either `register` with `values`, or "
                            "`running` (a coil or discrete input)")
        if state.register is not None:
            reg = self.ref(f"{e}.state.register", state.register, read=True, numeric=True)
            assert reg is not None
            if not state.values:
                raise self.fail(f"{e}.state.values", "empty: map the register's values to "
                                f"states ({', '.join(s.value for s in PumpState)})")
            for key in state.values:
                self.fits(f"{e}.state.values", reg, key)
        self.ref(f"{e}.state.running", state.running, read=True, bit=True)
        self.ref(f"{e}.counters.infused", ops.counters.infused, read=True, numeric=True)
        self.ref(f"{e}.counters.withdrawn", ops.counters.withdrawn, read=True, numeric=True)
        for i, alarm in enumerate(ops.alarms):
            entry = f"{e}.alarms[{i}]"
            reg = self.ref(f"{entry}.register", alarm.register, read=True)
            assert reg is not None
            if alarm.value is not None and alarm.bit is not None:
                raise self.fail(entry, "give `value` or `bit`, not both")
            if alarm.bit is not None:
                vt = reg.value_type
                if vt in (ValueType.F32, ValueType.BOOL) or not 0 <= alarm.bit < vt.bit_count:
                    raise self.fail(f"{entry}.bit", f"bit {alarm.bit} is outside register "
                                    f"{reg.name} ({vt.value})")
            if alarm.value is not None:
                self.fits(f"{entry}.value", reg, alarm.value)
        if ops.watchdog is not None:
            w = ops.watchdog
            reg = self.ref(f"{e}.watchdog.register", w.register, write=True, read=True,
                           numeric=True)
            assert reg is not None
            if w.min_s > w.max_s:
                raise self.fail(f"{e}.watchdog", f"min_s {w.min_s} is above max_s {w.max_s}")
            self.fits(f"{e}.watchdog.max_s", reg, w.max_s)
        if self.map.command_response is not None:
            self.ref("command_response.register", self.map.command_response.register,
                     read=True, numeric=True)


def check_map(pump_map: PumpMap) -> None:
    """Raise `MapError` for the first problem across entries of `pump_map`."""
    MapChecker(pump_map).run()
