"""The parts of a Modbus pump map (pydantic, frozen): registers, blocks, operations.

`pumpmap` loads a map and checks it as a whole (`mapcheck`); this module says what each
entry may hold on its own. Every field is described in docs/modbus.md. An operation a pump
cannot do is `not supported` in the YAML, said explicitly, and None (or []) here.
"""

from __future__ import annotations

import warnings
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from pumpctl.drivers.base import AlarmKind, PumpState
from pumpctl.errors import UsageError

NOT_SUPPORTED = "not supported"
MAX_ADDRESS = 0xFFFF
MIN_UNIT, MAX_UNIT = 1, 247  # unit ids of a pump: 0 is broadcast (no reply), 248-255 reserved
# Rate units a map may set its rate register in: mL/h per unit.
RATE_UNITS: dict[str, float] = {"mL/h": 1.0, "mL/min": 60.0, "uL/h": 0.001, "uL/min": 0.06}


class MapError(UsageError):
    """A register map that cannot be used: one line naming the map, the entry, the problem."""

    def __init__(self, map_name: str, entry: str, problem: str) -> None:
        self.map_name = map_name
        self.entry = entry
        self.problem = problem
        super().__init__(f"modbus map {map_name}: {entry}: {problem}")


class RegisterKind(StrEnum):
    COIL = "coil"  # one bit, read FC 1, written FC 5
    DISCRETE = "discrete"  # one bit, read-only, FC 2
    HOLDING = "holding"  # 16-bit words, read FC 3, written FC 6 / FC 16
    INPUT = "input"  # 16-bit words, read-only, FC 4

    @property
    def is_bit(self) -> bool:
        return self in (RegisterKind.COIL, RegisterKind.DISCRETE)

    @property
    def writable(self) -> bool:
        return self in (RegisterKind.COIL, RegisterKind.HOLDING)


class ValueType(StrEnum):
    U16 = "u16"
    I16 = "i16"
    U32 = "u32"
    F32 = "f32"
    BOOL = "bool"  # coils and discrete inputs only

    @property
    def words(self) -> int:
        """16-bit registers (or bits, for bool) one value occupies."""
        return 2 if self in (ValueType.U32, ValueType.F32) else 1

    @property
    def bit_count(self) -> int:
        return 1 if self is ValueType.BOOL else 16 * self.words

    @property
    def int_range(self) -> tuple[int, int] | None:
        """The wire values an integer type holds (None for f32)."""
        return {ValueType.U16: (0, 0xFFFF), ValueType.I16: (-0x8000, 0x7FFF),
                ValueType.U32: (0, 0xFFFF_FFFF), ValueType.BOOL: (0, 1)}.get(self)


class WordOrder(StrEnum):
    BIG = "big"  # high word first: ABCD
    LITTLE = "little"  # low word first: CDAB


class Access(StrEnum):
    R = "r"
    RW = "rw"
    W = "w"
    ACTION = "action"  # written to trigger something; reads back 0

    @property
    def readable(self) -> bool:
        return self in (Access.R, Access.RW)

    @property
    def writable(self) -> bool:
        return self is not Access.R


# Operations name their register in a field called `register`, which is also the name of a
# method on the models' metaclass (ABCMeta.register): pydantic warns, but instances read the
# field, and the YAML word is the natural one.
warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)


class _Model(BaseModel):
    """Unknown keys are errors: a misspelt field must not be silently ignored. NaN and
    infinity are no number a register can hold or a limit can be."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _Optional(_Model):
    """A part whose optional fields may say `not supported` (the same as null)."""

    @model_validator(mode="before")
    @classmethod
    def _not_supported(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: None if v == NOT_SUPPORTED else v for k, v in data.items()}
        return data


class Register(_Model):
    name: str = ""  # the key under `registers:` (filled in from it)
    kind: RegisterKind
    address: int = Field(ge=0, le=MAX_ADDRESS)
    type: ValueType | None = None  # default: bool for coil/discrete, u16 otherwise
    scale: float = 1.0  # integer types: wire = value * scale
    unit: str | None = None
    access: Access = Access.R
    enum: dict[int, str] = Field(default_factory=dict)  # wire value -> meaning
    bits: dict[int, str] = Field(default_factory=dict)  # bit index -> meaning (error words)
    min: float | None = None  # engineering limits (the pump refuses values outside)
    max: float | None = None
    doc: str = ""

    @model_validator(mode="after")
    def _default_type(self) -> Register:
        if self.type is None:
            object.__setattr__(self, "type", ValueType.BOOL if self.kind.is_bit
                               else ValueType.U16)
        return self

    @property
    def value_type(self) -> ValueType:
        assert self.type is not None
        return self.type

    @property
    def span(self) -> range:
        """The addresses (of its kind) this register occupies."""
        return range(self.address, self.address + self.value_type.words)

    @property
    def readable(self) -> bool:
        return self.access.readable

    @property
    def writable(self) -> bool:
        return self.kind.writable and self.access.writable


class Block(_Model):
    """A documented range a client may read in one request; unnamed addresses read as 0."""

    kind: RegisterKind
    start: int = Field(ge=0, le=MAX_ADDRESS)
    end: int = Field(ge=0, le=MAX_ADDRESS)  # inclusive

    @model_validator(mode="after")
    def _ordered(self) -> Block:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self

    def __contains__(self, address: object) -> bool:
        return isinstance(address, int) and self.start <= address <= self.end


class Write(_Model):
    """One write: `register` set to `value` (an action coil or command word, a selection)."""

    register: str
    value: float = 1


class SetValue(_Model):
    """A setting: written to `register`, read back from `readback` (default: the same)."""

    register: str
    readback: str | None = None
    unit: str | None = None  # rate: one of RATE_UNITS; volume: mL; diameter: mm
    select: list[Write] = Field(default_factory=list)  # written before a run (unit, mode)

    @property
    def readback_register(self) -> str:
        return self.readback or self.register


class Identify(_Optional):
    model: str | None = None  # a register whose value (or its enum meaning) names the model
    model_text: str | None = None  # the model as text, when no register says it
    firmware: str | list[str] | None = None  # one register, or parts joined with "."

    @property
    def firmware_registers(self) -> list[str]:
        if self.firmware is None:
            return []
        return [self.firmware] if isinstance(self.firmware, str) else list(self.firmware)


class DirectionOp(_Model):
    register: str
    infuse: int
    withdraw: int


class StateOp(_Model):
    """A state register whose values are pumpctl states, or a running bit (the direction
    then comes from the direction operation)."""

    register: str | None = None
    values: dict[int, PumpState] = Field(default_factory=dict)
    running: str | None = None


class Counters(_Optional):
    infused: str
    withdrawn: str | None = None


class AlarmSource(_Model):
    """An alarm: `register` equal to `value`, or its `bit` set, or (neither given) non-zero."""

    register: str
    value: int | None = None
    bit: int | None = None
    kind: AlarmKind = AlarmKind.UNKNOWN
    code: str
    message: str = ""


class WatchdogOp(_Model):
    register: str
    min_s: int = Field(ge=0)
    max_s: int = Field(ge=1)


class CommandResponse(_Model):
    """A register that tells, after every write, whether the pump took it (Vindum IR 0)."""

    register: str
    ok: int = 0


# Operations every pump must have; the others may be `not supported` (said explicitly).
_REQUIRED_OPS = ("rate", "run", "stop", "state", "counters")
_OPTIONAL_OPS = ("identify", "rate_actual", "volume_target", "diameter", "direction",
                 "run_with_target", "pause", "alarms", "acknowledge", "clear_counters",
                 "watchdog")


class Operations(_Model):
    """What the pump does for each pumpctl operation; None: the pump cannot."""

    identify: Identify | None
    rate: SetValue
    rate_actual: str | None
    volume_target: SetValue | None
    diameter: SetValue | None = None  # additive: not every map names it (default: none)
    direction: DirectionOp | None
    run: Write
    run_with_target: Write | None
    stop: Write
    pause: Write | None
    state: StateOp
    counters: Counters
    alarms: list[AlarmSource]
    acknowledge: Write | None
    clear_counters: Write | None
    watchdog: WatchdogOp | None

    @model_validator(mode="before")
    @classmethod
    def _explicit(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in _REQUIRED_OPS:
            if data.get(name) == NOT_SUPPORTED:
                raise ValueError(f"{name}: every pump must support it")
        for name in _OPTIONAL_OPS:
            if name not in data and name != "diameter":
                raise ValueError(f"{name}: missing; write `{name}: {NOT_SUPPORTED}` if the "
                                 "pump cannot do it")
            if data.get(name) == NOT_SUPPORTED:
                data[name] = [] if name == "alarms" else None
        return data


class LineDefaults(_Model):
    framer: Literal["socket", "rtu"] = "socket"
    port: int | None = Field(default=None, ge=1, le=65535)
    baud: int = Field(default=19200, ge=300, le=1_000_000)
    parity: Literal["N", "E", "O"] = "N"
    unit: int = Field(default=1, ge=0, le=247)


class PumpFacts(_Model):
    model: str = ""
    firmware: str = ""
    max_rate_ml_h: float | None = None
    min_rate_ml_h: float | None = None
    diameter_min_mm: float | None = None
    diameter_max_mm: float | None = None
    capacity_ml: float | None = None
    note: str = ""


class PumpMap(_Model):
    name: str
    title: str
    source: str = ""
    word_order: WordOrder = WordOrder.BIG
    word_order_certain: bool = True
    word_order_note: str = ""
    line: LineDefaults = Field(default_factory=LineDefaults)
    registers: dict[str, Register]
    blocks: list[Block] = Field(default_factory=list)
    operations: Operations
    pump: PumpFacts = Field(default_factory=PumpFacts)
    error_code: int = Field(default=3, ge=1, le=255)  # the exception a refused value answers
    one_float_per_write: bool = False  # FC 16 only for exactly one two-register value
    command_response: CommandResponse | None = None
    busy_after_direction_change_s: float = Field(default=0.0, ge=0)

    _index: dict[tuple[RegisterKind, int], Register] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("registers"), dict):
            registers = {}
            for key, entry in data["registers"].items():
                if isinstance(entry, dict):
                    if entry.get("name", key) != key:
                        raise ValueError(f"registers.{key}: name {entry['name']!r} differs "
                                         "from its key")
                    entry = {**entry, "name": key}
                registers[key] = entry
            data = {**data, "registers": registers}
        return data

    def model_post_init(self, context: Any, /) -> None:
        for reg in self.registers.values():
            for address in reg.span:
                self._index.setdefault((reg.kind, address), reg)

    # ---- line defaults, read flat as well -----------------------------------------------------

    @property
    def framer(self) -> str:
        return self.line.framer

    @property
    def port(self) -> int | None:
        return self.line.port

    @property
    def baud(self) -> int:
        return self.line.baud

    @property
    def parity(self) -> str:
        return self.line.parity

    @property
    def unit(self) -> int:
        return self.line.unit

    # ---- lookups ------------------------------------------------------------------------------

    def register(self, name: str) -> Register:
        try:
            return self.registers[name]
        except KeyError:
            raise MapError(self.name, "registers", f"no register named {name!r}") from None

    def at(self, kind: RegisterKind, address: int) -> Register | None:
        """The register of this kind that occupies `address` (either word of a float)."""
        return self._index.get((RegisterKind(kind), address))

    def readable(self, kind: RegisterKind, address: int) -> bool:
        """Whether a read of `address` is answered: inside a register or a documented block."""
        kind = RegisterKind(kind)
        if (kind, address) in self._index:
            return True
        return any(b.kind is kind and address in b for b in self.blocks)

    def with_word_order(self, word_order: WordOrder) -> PumpMap:
        return self.model_copy(update={"word_order": WordOrder(word_order)})
