"""Balance readings from a text file: the `t_min,mass_g` CSV, or a log a lab already has.

Accepted without fuss: a header or none, comma / semicolon / tab / blank-separated columns,
decimal commas (with semicolon or tab columns), blank lines, `#` comments, a byte-order mark,
CRLF line ends, extra columns (a header picks the time and mass columns by name), a unit after
each mass (`12.3456 g`), and clock times (`13:02:30`, `2024-05-01T13:02:30`) instead of
minutes. What cannot be read is one line naming the file, line, column and value.

Headers name their units: time `t_min`, `t (s)`, `Time [h]`…; a numeric time column without a
unit is refused (seconds or minutes: a factor 60 is not something to guess). A mass column
without a unit is taken as grams, the unit analytical balances report in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from pumpctl.analysis.accuracy import FloatArray
from pumpctl.analysis.input_file import read_text_file
from pumpctl.errors import UsageError

TIME_UNITS_MIN = {"min": 1.0, "mins": 1.0, "minute": 1.0, "minutes": 1.0,
                  "s": 1 / 60, "sec": 1 / 60, "secs": 1 / 60, "second": 1 / 60,
                  "seconds": 1 / 60, "h": 60.0, "hr": 60.0, "hrs": 60.0, "hour": 60.0,
                  "hours": 60.0}
MASS_UNITS_G = {"g": 1.0, "mg": 1e-3, "kg": 1e3}
_TIME_NAMES = ("t", "time", "elapsed", "timestamp", "date")
_MASS_NAMES = ("mass", "weight", "w", "m", "net", "gross", "reading", "value")
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_MASS_VALUE = re.compile(r"^(?P<num>\S*?)\s*(?P<unit>mg|kg|g)?$")
_CLOCK = re.compile(r"^(?P<h>\d{1,2}):(?P<m>\d{2}):(?P<s>\d{2}(?:\.\d+)?)$")
# A reading may be this far off its place on the interval grid (timestamps of lab software
# jitter by a second or two; a missing reading is a whole interval off).
GRID_TOLERANCE = 0.25


class SamplesError(UsageError):
    """A samples file that cannot be read; the message names file, line, column and value."""


@dataclass(frozen=True)
class MassSeries:
    times_min: FloatArray  # from the file's own clock (first reading: t0)
    masses_g: FloatArray
    lines: tuple[int, ...]  # the file line of each reading, for messages
    source: str

    @property
    def start_min(self) -> float:
        return float(self.times_min[0]) if self.times_min.size else 0.0


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[^a-zµ]+", name.lower()) if t]


@dataclass(frozen=True)
class _Columns:
    time: int
    mass: int
    time_name: str
    mass_name: str
    time_factor: float | None  # minutes per unit; None: no unit given (clock times only)
    mass_factor: float
    date: int | None = None  # a date column whose value prefixes a clock time


def _header_columns(fields: list[str], where: str) -> _Columns:
    time_i = mass_i = date_i = None
    for i, name in enumerate(fields):
        tokens = _tokens(name)
        if not tokens:
            continue
        if tokens[0] == "date" and date_i is None:
            date_i = i  # a separate date column goes with clock times in the time column
        elif time_i is None and tokens[0] in _TIME_NAMES:
            time_i = i
        elif mass_i is None and tokens[0] in _MASS_NAMES:
            mass_i = i
    if time_i is None:
        time_i, date_i = date_i, None
    if time_i is None or mass_i is None:
        missing = "time (t_min)" if time_i is None else "mass (mass_g)"
        raise SamplesError(f"{where}: header {','.join(fields)!r} has no {missing} column")
    time_units = [TIME_UNITS_MIN[t] for t in _tokens(fields[time_i])[1:] if t in TIME_UNITS_MIN]
    mass_units = [MASS_UNITS_G[t] for t in _tokens(fields[mass_i])[1:] if t in MASS_UNITS_G]
    return _Columns(time_i, mass_i, fields[time_i].strip(), fields[mass_i].strip(),
                    time_units[0] if time_units else None,
                    mass_units[0] if mass_units else 1.0, date_i)


def _split(line: str, delimiter: str | None) -> list[str]:
    parts = line.split(delimiter) if delimiter else line.split()
    return [p.strip().strip('"').strip() for p in parts]


def _delimiter(line: str) -> str | None:
    for candidate in ("\t", ";", ","):
        if candidate in line:
            return candidate
    return None  # blanks


def _number(text: str, decimal_comma: bool) -> float | None:
    if decimal_comma:
        text = text.replace(",", ".")
    return float(text) if _NUMBER.match(text) else None


def _clock_minutes(text: str) -> float | None:
    """Minutes since midnight of a clock time, or of the epoch for a date and time."""
    match = _CLOCK.match(text)
    if match:
        return int(match["h"]) * 60 + int(match["m"]) + float(match["s"]) / 60
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    return stamp.timestamp() / 60.0 if stamp.tzinfo else (
        (stamp - datetime(1970, 1, 1)).total_seconds() / 60.0)


def parse_mass_series(text: str, *, source: str = "samples") -> MassSeries:
    """Readings from the text of a samples file (see the module docstring for what is read)."""
    columns: _Columns | None = None
    delimiter: str | None = None
    decimal_comma = False
    clock = False
    times: list[float] = []
    masses: list[float] = []
    lines: list[int] = []
    day_offset = 0.0
    header: _Columns | None = None
    preamble: list[tuple[str, SamplesError]] = []  # lines before the data, not a header
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source} line {number}"
        if columns is None:
            delimiter = _delimiter(line)
            decimal_comma = delimiter in ("\t", ";")
            fields = _split(line, delimiter)
            first = fields[0].replace(",", ".") if decimal_comma else fields[0]
            if not _NUMBER.match(first) and _clock_minutes(fields[0]) is None:
                # A title or an export's preamble, or the header: the last header wins.
                try:
                    header = _header_columns(fields, where)
                except SamplesError as exc:
                    preamble.append((line, exc))
                continue
            if header is None and preamble:
                raise preamble[-1][1]  # a header we cannot read: never guess the columns
            columns = header or _Columns(0, 1, "t_min", "mass_g", 1.0, 1.0)
        fields = _split(line, delimiter)
        if len(fields) <= max(columns.time, columns.mass):
            raise SamplesError(f"{where}: {len(fields)} field(s) {line!r}; expected "
                               f"{columns.time_name} and {columns.mass_name}")
        t_text, m_text = fields[columns.time], fields[columns.mass]
        t = _number(t_text, decimal_comma)
        if t is None:
            if columns.date is not None and columns.date < len(fields):
                t_text = f"{fields[columns.date]} {t_text}"
            t = _clock_minutes(t_text)
            if t is None:
                raise SamplesError(f"{where}: {columns.time_name} {t_text!r} is not a number "
                                   "or a clock time")
            if not times:
                clock = True
            elif not clock:
                raise SamplesError(f"{where}: {columns.time_name} {t_text!r} is a clock time "
                                   "but earlier readings were numbers")
            t += day_offset
            if times and t < times[-1] - 12 * 60:  # a clock time past midnight
                day_offset += 24 * 60
                t += 24 * 60
        else:
            if clock:
                raise SamplesError(f"{where}: {columns.time_name} {t_text!r} is a number but "
                                   "earlier readings were clock times")
            if columns.time_factor is None:
                raise SamplesError(f"{where}: column {columns.time_name!r} names no time unit; "
                                   "call it t_min, t_s or t_h")
            t *= columns.time_factor
        value = _MASS_VALUE.match(m_text)
        mass = _number(value["num"], decimal_comma) if value else None
        if value is None or mass is None:
            raise SamplesError(f"{where}: {columns.mass_name} {m_text!r} is not a number")
        factor = MASS_UNITS_G[value["unit"]] if value["unit"] else columns.mass_factor
        if times and t <= times[-1]:
            raise SamplesError(f"{where}: {columns.time_name} {t_text!r} does not come after "
                               f"the previous reading")
        times.append(t)
        masses.append(mass * factor)
        lines.append(number)
    if len(times) < 2:
        raise SamplesError(f"{source}: {len(times)} reading(s); at least two are needed")
    return MassSeries(np.asarray(times, dtype=np.float64), np.asarray(masses, dtype=np.float64),
                      tuple(lines), source)


def check_interval(series: MassSeries, interval_min: float) -> None:
    """Every reading on the interval grid from the first one, or SamplesError at the first
    that is not (a missing, repeated or late reading, or the wrong --interval)."""
    t = series.times_min
    offsets = (t - t[0]) / interval_min
    off_grid = np.abs(offsets - np.arange(t.size)) > GRID_TOLERANCE
    if not off_grid.any():
        return
    k = int(np.flatnonzero(off_grid)[0])
    gap = float(t[k] - t[k - 1])
    typical = float(np.median(np.diff(t)))
    hint = (f"; the readings are about every {typical:.4g} min: give --interval {typical:.4g}min"
            if abs(typical - interval_min) > GRID_TOLERANCE * interval_min else
            ": a missing or repeated reading?")
    raise SamplesError(f"{series.source} line {series.lines[k]}: reading at {t[k] - t[0]:.4g} "
                       f"min is {gap:.4g} min after the previous one, expected every "
                       f"{interval_min:g} min{hint}")


def read_mass_series(path: Path) -> MassSeries:
    return parse_mass_series(read_text_file(path, what="samples file"), source=str(path))
