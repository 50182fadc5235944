"""One Modbus unit id: a map served over one protocol-free `SimulatedPump`.

`ModbusUnit.answer(request, now)` takes one request (already framed) and gives the reply PDU,
or None for silence. It follows the engine contract of docs/simulators.md: the pump is
serviced first, a pump without power or deaf from a fault answers nothing, a request damaged
on the way in is ignored (a slave answers no damaged frame), every valid request feeds the
pump's watchdog, and then the function code is carried out against the map:

- reads (FC 1, 2, 3, 4): every address must lie in a register or a documented block of the
  map (else exception 2); block gaps, write-only and action registers read 0; bound registers
  give the pump's live values, the others what was last written;
- writes (FC 5, 6, 15, 16): every address must be a writable register (else exception 2), a
  write must cover whole values (half a float: the map's error code), a value outside the
  register's type, enum or min/max, or refused by the pump, answers the map's error code and
  changes nothing. A map with a command-response register (Vindum IR 0) takes the write at
  the Modbus level and shows the pump's verdict there (0 accepted) instead; a map with
  `one_float_per_write` refuses FC 15 and any FC 16 that is not one two-register value;
- FC 17 (report server id) names the pump; other function codes answer exception 1.

The Modbus faults of `simulators.modbus.faults` are kept per unit and come due on requests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.pdu.bit_message import (
    ReadCoilsResponse,
    ReadDiscreteInputsResponse,
    WriteMultipleCoilsResponse,
    WriteSingleCoilResponse,
)
from pymodbus.pdu.other_message import ReportDeviceIdResponse
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
    WriteMultipleRegistersResponse,
    WriteSingleRegisterResponse,
)

from pumpctl.drivers.modbus.codec import decode, encode
from pumpctl.drivers.modbus.pumpmap import (
    Access,
    PumpMap,
    Register,
    RegisterKind,
    ValueType,
    WordOrder,
)
from simulators.modbus.bindings import Number, PumpBinder, Refused
from simulators.modbus.faults import ModbusFault, ModbusFaultKind
from simulators.modbus.wire import Request, decode_request
from simulators.pump import PumpAlarm, SimulatedPump
from simulators.wire_faults import Countdown

READ_KINDS = {1: RegisterKind.COIL, 2: RegisterKind.DISCRETE, 3: RegisterKind.HOLDING,
              4: RegisterKind.INPUT}
COIL_ON, COIL_OFF = 0xFF00, 0x0000
MAX_LAYOUTS = 256  # read ranges remembered per unit (a client polls a handful)
Layout = list[tuple[str | None, int, int]]  # (register or None: a gap, first word, words)


class WriteError(Exception):
    """A write the unit does not take: the exception code, or a refusal to show."""

    def __init__(self, code: int | None = None, refused: Refused | None = None) -> None:
        super().__init__(code, refused)
        self.code = code
        self.refused = refused


class ModbusUnit:
    """The pump behind one unit id. `time_base` gives the clock time fault times count from
    (the line's start)."""

    def __init__(self, unit_id: int, pump: SimulatedPump, pump_map: PumpMap, *,
                 time_base: Callable[[], float]) -> None:
        self.unit_id = unit_id
        self.pump = pump
        self.map = pump_map
        self.word_order: WordOrder = pump_map.word_order
        self._time_base = time_base
        self._stored: dict[str, list[int]] = {}
        self.busy_until = -math.inf  # after a direction change (the map's busy period)
        self.last_response = 0  # the command-response register, if the map has one
        self._binder = PumpBinder(pump_map, pump, stored=self._stored_value,
                                  direction_changed=self._start_busy)
        self._bindings = self._binder.bind()
        self._init_storage()
        self._getters = {reg.name: self._getter(reg) for reg in pump_map.registers.values()}
        self._layouts: dict[tuple[RegisterKind, int, int], Layout | None] = {}
        # Modbus faults: scheduled, then in force.
        self._faults: list[ModbusFault] = []
        self._exception = Countdown()
        self._exception_code = int(ExcCodes.DEVICE_FAILURE)
        self._fault_busy_until = -math.inf
        self._silent_until = -math.inf
        self._split = Countdown()
        self.split_gap_s = 0.0
        self._glue = Countdown()
        pump.add_alarm_listener(self._on_alarm)
        if pump.alarm is PumpAlarm.POWER_RESET:
            self._on_alarm(PumpAlarm.POWER_RESET)

    # ---- storage ---------------------------------------------------------------------------

    def _init_storage(self) -> None:
        ident = self.map.operations.identify
        initial: dict[str, Number] = {}
        if ident is not None and ident.model is not None:
            model = self.map.register(ident.model)
            if model.enum:
                initial[model.name] = next(iter(model.enum))
        if ident is not None and ident.firmware_registers:
            parts = self.map.pump.firmware.split(".")
            names = ident.firmware_registers
            if len(names) == 1:
                parts = [self.map.pump.firmware]
            for name, part in zip(names, parts, strict=False):
                try:
                    initial[name] = float(part)
                except ValueError:
                    continue
        for name, value in initial.items():
            reg = self.map.register(name)
            try:
                self._stored[name] = encode(reg, value, self.word_order)
            except ValueError:
                continue  # a firmware text the register cannot hold: it reads 0

    def _stored_value(self, name: str) -> Number | None:
        words = self._stored.get(name)
        reg = self.map.register(name)
        return decode(reg, words or [0] * reg.value_type.words, self.word_order)

    def _start_busy(self) -> None:
        busy = self.map.busy_after_direction_change_s
        if busy > 0:
            self.busy_until = self.pump.clock.monotonic() + busy

    def _on_alarm(self, alarm: PumpAlarm) -> None:
        # A power-up the map cannot show is not latched: the pump comes back stopped.
        if alarm is PumpAlarm.POWER_RESET and not self._binder.showable(alarm):
            self.pump.acknowledge_alarm()

    # ---- faults ----------------------------------------------------------------------------

    def inject(self, fault: ModbusFault) -> None:
        self._faults.append(fault)
        self._faults.sort(key=lambda f: f.at_s)

    def _faults_due(self, now: float) -> None:
        base = self._time_base()
        while self._faults and base + self._faults[0].at_s <= now:
            fault = self._faults.pop(0)
            at = base + fault.at_s
            kind = fault.kind
            if kind is ModbusFaultKind.EXCEPTION:
                self._exception.start(fault.param("count"))
                self._exception_code = int(fault.param("code"))
            elif kind is ModbusFaultKind.BUSY:
                self._fault_busy_until = at + fault.param("for")
            elif kind is ModbusFaultKind.SILENCE:
                span = fault.param("for")
                self._silent_until = at + span if span > 0 else math.inf
            elif kind is ModbusFaultKind.SPLIT_REPLIES:
                self._split.start(fault.param("count"))
                self.split_gap_s = fault.param("gap")
            elif kind is ModbusFaultKind.GLUE_REPLIES:
                self._glue.start(fault.param("count"))

    def take_split(self) -> bool:
        """True when the reply about to leave is to be split (see `split_gap_s`)."""
        return self._split.take()

    def take_glue(self) -> bool:
        """True when the reply about to leave carries a second reply glued behind it."""
        return self._glue.take()

    # ---- a request -------------------------------------------------------------------------

    def answer(self, request: Request, now: float) -> ModbusPDU | None:
        """The reply to `request` (None: silence)."""
        pump = self.pump
        pump.service(now)
        self._faults_due(now)
        if not pump.powered or now < self._silent_until:
            return None
        if pump.take_ignored_command() or pump.wire.take_inbound_corruption():
            return None
        pump.feed_watchdog(now)
        fc = request.function_code
        if self._exception.take():
            return ExceptionResponse(fc, self._exception_code)
        if now < self._fault_busy_until:
            return ExceptionResponse(fc, ExcCodes.DEVICE_BUSY)
        decoded = decode_request(request.pdu)
        if isinstance(decoded, int):
            return ExceptionResponse(fc, decoded)
        if fc in READ_KINDS:
            return self._read(READ_KINDS[fc], decoded.address, decoded.count, fc)
        if fc == 17:
            text = self.map.pump.model or self.map.title
            return ReportDeviceIdResponse(identifier=text.encode("ascii", "replace"))
        if fc not in (5, 6, 15, 16):
            return ExceptionResponse(fc, ExcCodes.ILLEGAL_FUNCTION)
        if now < self.busy_until:
            return ExceptionResponse(fc, ExcCodes.DEVICE_BUSY)
        try:
            reply = self._write(fc, decoded, request.pdu)
        except WriteError as exc:
            code = exc.code or self.map.error_code
            self._respond(exc.refused.code if exc.refused is not None else code)
            if exc.refused is None or self.map.command_response is None:
                return ExceptionResponse(fc, code)
            # The pump took the request and says no in its command-response register.
            reply = self._echo(fc, decoded)
        else:
            self._respond(None)
        pump.poke()
        return reply

    def _respond(self, code: int | None) -> None:
        """Set the command-response register (if the map has one): `code`, or ok."""
        response = self.map.command_response
        if response is not None:
            self.last_response = response.ok if code is None else code

    # ---- reads -----------------------------------------------------------------------------

    def _read(self, kind: RegisterKind, address: int, count: int, fc: int) -> ModbusPDU:
        layout = self._layout(kind, address, count)
        if layout is None:
            return ExceptionResponse(fc, ExcCodes.ILLEGAL_ADDRESS)
        words: list[int] = []
        for name, first, size in layout:
            if name is None:
                words += [0] * size
            else:
                words += self._getters[name]()[first:first + size]
        if kind is RegisterKind.COIL:
            return ReadCoilsResponse(bits=[bool(w) for w in words])
        if kind is RegisterKind.DISCRETE:
            return ReadDiscreteInputsResponse(bits=[bool(w) for w in words])
        if kind is RegisterKind.HOLDING:
            return ReadHoldingRegistersResponse(registers=words)
        return ReadInputRegistersResponse(registers=words)

    def _layout(self, kind: RegisterKind, address: int, count: int) -> Layout | None:
        """What a read of `count` addresses from `address` covers: runs of (register name or
        None for a gap, first word of it, words), or None if an address is outside the map.
        A polling client asks the same few ranges again and again: they are worked out once."""
        key = (kind, address, count)
        if key in self._layouts:
            return self._layouts[key]
        layout: Layout | None = []
        a, last = address, address + count - 1
        while layout is not None and a <= last:
            reg = self.map.at(kind, a)
            if reg is not None:
                first = a - reg.address
                size = min(reg.value_type.words - first, last - a + 1)
                layout.append((reg.name, first, size))
                a += size
            elif self.map.readable(kind, a):
                layout.append((None, 0, 1))
                a += 1
            else:
                layout = None
        if len(self._layouts) < MAX_LAYOUTS:
            self._layouts[key] = layout
        return layout

    def words_of(self, reg: Register) -> list[int]:
        """What `reg` reads as now, in the served word order."""
        return self._getters[reg.name]()

    def _getter(self, reg: Register) -> Callable[[], list[int]]:
        """How `reg` is read: zeros (write-only, action), the command response, the pump's
        live value, or what was last written."""
        size = reg.value_type.words
        zeros = [0] * size
        name = reg.name
        if reg.access in (Access.W, Access.ACTION):
            return lambda: list(zeros)
        order = self.word_order
        response = self.map.command_response
        if response is not None and response.register == name:
            return lambda: encode(reg, self.last_response, order)
        reader = self._bindings.readers.get(name)
        if reader is not None:
            return lambda: encode(reg, _fit(reg, reader()), order)
        return lambda: list(self._stored.get(name, zeros))

    # ---- writes ----------------------------------------------------------------------------

    def _write(self, fc: int, request: ModbusPDU, pdu: bytes) -> ModbusPDU:
        if fc == 5:
            raw = int.from_bytes(pdu[3:5], "big")
            if raw not in (COIL_ON, COIL_OFF):
                raise WriteError(ExcCodes.ILLEGAL_VALUE)
            reg = self._writable(RegisterKind.COIL, request.address)
            self._apply([(reg, [1 if raw == COIL_ON else 0])])
            return WriteSingleCoilResponse(address=request.address, bits=[raw == COIL_ON])
        if fc == 15:
            if self.map.one_float_per_write:
                raise WriteError(ExcCodes.ILLEGAL_FUNCTION)
            count = request.count
            byte_count = getattr(request, "byte_count", None)
            if len(request.bits) != count or byte_count != (count + 7) // 8:
                raise WriteError(ExcCodes.ILLEGAL_VALUE)
            regs = [self._writable(RegisterKind.COIL, request.address + i) for i in range(count)]
            self._apply([(reg, [int(bit)]) for reg, bit in zip(regs, request.bits, strict=True)])
            return WriteMultipleCoilsResponse(address=request.address, count=count)
        if fc == 6:
            reg = self._writable(RegisterKind.HOLDING, request.address)
            if reg.value_type.words != 1:
                raise WriteError(self.map.error_code)  # half of a two-register value
            self._apply([(reg, [request.registers[0]])])
            return WriteSingleRegisterResponse(address=request.address,
                                               registers=[request.registers[0]])
        # FC 16
        count = request.count
        if not 1 <= count <= 123 or getattr(request, "byte_count", None) != 2 * count \
                or len(request.registers) != count:
            raise WriteError(ExcCodes.ILLEGAL_VALUE)
        writes = self._split_values(request.address, list(request.registers))
        if self.map.one_float_per_write and (len(writes) != 1 or
                                             writes[0][0].value_type.words != 2):
            raise WriteError(self.map.error_code)
        self._apply(writes)
        return WriteMultipleRegistersResponse(address=request.address, count=count)

    def _echo(self, fc: int, request: ModbusPDU) -> ModbusPDU:
        """The normal reply to a write the pump refused in its command-response register."""
        if fc == 5:
            return WriteSingleCoilResponse(address=request.address, bits=list(request.bits))
        if fc == 6:
            return WriteSingleRegisterResponse(address=request.address,
                                               registers=[request.registers[0]])
        if fc == 15:
            return WriteMultipleCoilsResponse(address=request.address, count=request.count)
        return WriteMultipleRegistersResponse(address=request.address, count=request.count)

    def _writable(self, kind: RegisterKind, address: int) -> Register:
        reg = self.map.at(kind, address)
        if reg is None or not reg.writable:
            raise WriteError(ExcCodes.ILLEGAL_ADDRESS)
        return reg

    def _split_values(self, address: int, words: list[int]) -> list[tuple[Register, list[int]]]:
        """Holding words from `address` as whole values of the registers they cover."""
        out: list[tuple[Register, list[int]]] = []
        i = 0
        while i < len(words):
            reg = self._writable(RegisterKind.HOLDING, address + i)
            size = reg.value_type.words
            if reg.address != address + i or i + size > len(words):
                raise WriteError(self.map.error_code)  # part of a value
            out.append((reg, words[i:i + size]))
            i += size
        return out

    def _apply(self, writes: Sequence[tuple[Register, list[int]]]) -> None:
        """Check every value, then carry them out in order; the first refusal stops."""
        values = [(reg, words, self._value(reg, words)) for reg, words in writes]
        for reg, words, value in values:
            refused = self._carry_out(reg, words, value)
            if refused is not None:
                raise WriteError(None, refused)

    def _value(self, reg: Register, words: list[int]) -> Number:
        value = decode(reg, words, self.word_order)
        if isinstance(value, float) and not math.isfinite(value):
            raise WriteError(None, Refused.OUT_OF_RANGE)
        if (reg.min is not None and value < reg.min) or (reg.max is not None and value > reg.max):
            raise WriteError(None, Refused.OUT_OF_RANGE)
        if reg.enum and reg.value_type is not ValueType.F32 and int(value) not in reg.enum \
                and reg.name not in self._bindings.actions:
            raise WriteError(None, Refused.OUT_OF_RANGE)
        return value

    def _carry_out(self, reg: Register, words: list[int], value: Number) -> Refused | None:
        b = self._bindings
        actions = b.actions.get(reg.name)
        if actions is not None:
            action = actions.get(int(value)) if float(value).is_integer() else None
            if action is not None:
                return action()
            if reg.access is Access.ACTION and reg.kind.is_bit and value == 0:
                return None  # an action coil written 0 does nothing
            return Refused.OUT_OF_RANGE
        setter = b.setters.get(reg.name)
        if setter is not None:
            return setter(float(value))
        if reg.access is not Access.ACTION:
            self._stored[reg.name] = list(words)
        return None


def _fit(reg: Register, value: Number) -> Number:
    """A live value as the register can hold it (an integer type clamps, NaN reads 0)."""
    vt = reg.value_type
    if vt is ValueType.BOOL:
        return bool(value)
    if isinstance(value, float) and not math.isfinite(value):
        return 0.0
    limits = vt.int_range
    if limits is None:
        return value
    low, high = limits
    return min(max(value, low / reg.scale), high / reg.scale)
