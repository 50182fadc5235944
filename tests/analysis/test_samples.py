"""Reading balance logs: the CSV format, variants labs already have, and bad rows."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pumpctl.analysis.input_file import InputFileError, read_text_file
from pumpctl.analysis.samples import (
    SamplesError,
    check_interval,
    parse_mass_series,
    read_mass_series,
)


def test_plain_csv() -> None:
    s = parse_mass_series("t_min,mass_g\n0,0.0000\n0.5,0.0416\n1.0,0.0832\n")
    assert s.times_min.tolist() == [0.0, 0.5, 1.0]
    assert s.masses_g.tolist() == [0.0, 0.0416, 0.0832]
    assert s.lines == (2, 3, 4)


def test_no_header_blank_lines_comments_bom_crlf() -> None:
    text = ("\ufeff# balance XS205, beaker 1\r\n\r\n0,0.0\r\n\r\n0.5,0.0416\r\n"
            "# pause\r\n1,0.0832\r\n")
    s = parse_mass_series(text)
    assert s.masses_g.tolist() == [0.0, 0.0416, 0.0832]


@pytest.mark.parametrize("text", [
    "time (s);weight (g)\n0;0,0000\n30;0,0416\n60;0,0832\n",
    "Time [s]\tNet [mg]\tStable\n0\t0.0\tyes\n30\t41.6\tyes\n60\t83.2\tno\n",
    "t_h mass_g\n0 0\n0.008333333333 0.0416\n0.016666666667 0.0832\n",
    "Date,Time,Weight\n2024-05-01,13:59:00,0.0000 g\n2024-05-01,13:59:30,0.0416 g\n"
    "2024-05-01,14:00:00,0.0832 g\n",
    "Balance export v2\nSerial B123\nt_min,mass_g\n0,0\n0.5,0.0416\n1,0.0832\n",
])
def test_header_variants(text: str) -> None:
    s = parse_mass_series(text)
    assert np.allclose(s.times_min - s.times_min[0], [0.0, 0.5, 1.0])
    assert np.allclose(s.masses_g, [0.0, 0.0416, 0.0832])


def test_clock_times_past_midnight() -> None:
    s = parse_mass_series("time,mass_g\n23:59:30,0\n00:00:00,0.0416\n00:00:30,0.0832\n")
    assert np.allclose(s.times_min - s.times_min[0], [0.0, 0.5, 1.0])


@pytest.mark.parametrize(("text", "message"), [
    ("t_min,mass_g\n0,0\n0.5,abc\n", "samples line 3: mass_g 'abc' is not a number"),
    ("t_min,mass_g\n0,0\nx,0.1\n", "samples line 3: t_min 'x' is not a number or a clock time"),
    ("t_min,mass_g\n0,0\n0.5\n", "samples line 3: 1 field(s) '0.5'; expected t_min and mass_g"),
    ("t_min,mass_g\n0,0\n0,0.1\n", "samples line 3: t_min '0' does not come after"),
    ("time,mass\n0,0\n0.5,0.1\n", "samples line 2: column 'time' names no time unit"),
    ("Zeit;Gewicht\n0;0\n", "samples line 1: header 'Zeit,Gewicht' has no time (t_min) column"),
    ("t_min,mass_g\n0,0\n", "samples: 1 reading(s); at least two are needed"),
    ("t_min,mass_g\n0,0\n0.5,1e999x\n", "line 3: mass_g '1e999x' is not a number"),
])
def test_bad_rows_name_line_field_and_value(text: str, message: str) -> None:
    with pytest.raises(SamplesError) as info:
        parse_mass_series(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_interval_check_names_the_missing_reading() -> None:
    s = parse_mass_series("t_min,mass_g\n0,0\n0.5,0.04\n1.5,0.12\n2,0.16\n")
    with pytest.raises(SamplesError, match=r"line 4: reading at 1.5 min is 1 min after the "
                                           r"previous one, expected every 0.5 min: a missing"):
        check_interval(s, 0.5)
    ok = parse_mass_series("t_min,mass_g\n0,0\n0.51,0.04\n0.99,0.08\n1.5,0.12\n")
    check_interval(ok, 0.5)  # a second of jitter is fine


def test_interval_check_suggests_the_right_interval() -> None:
    s = parse_mass_series("t_min,mass_g\n0,0\n1,0.08\n2,0.16\n")
    with pytest.raises(SamplesError, match="give --interval 1min"):
        check_interval(s, 0.5)


def test_non_regular_files_fail_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputFileError, match="is a FIFO"):
        read_text_file(fifo)  # would block forever with a plain open()
    with pytest.raises(InputFileError, match="is a character device"):
        read_text_file(Path("/dev/zero"))
    with pytest.raises(InputFileError, match="is a directory"):
        read_text_file(tmp_path)
    with pytest.raises(InputFileError, match="no such file"):
        read_text_file(tmp_path / "missing.csv")
    big = tmp_path / "big.csv"
    with big.open("wb") as f:
        f.truncate(4096)
    with pytest.raises(InputFileError, match="4096 bytes; the limit is 1000"):
        read_text_file(big, max_bytes=1000)


def test_latin1_log(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes("# Temperatur 21.3 \xb0C\nt_min;mass_g\n0;0,0\n0,5;0,0416\n".encode("latin-1"))
    assert read_mass_series(path).masses_g.tolist() == [0.0, 0.0416]
