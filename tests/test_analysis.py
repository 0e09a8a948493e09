"""Tests for pipeline.files.analysis: G-code bytes in, time / filament / bounding boxes out."""

from __future__ import annotations

import math
import pathlib

import pytest

from pipeline.errors import LocalProtocolError
from pipeline.files.analysis import MAX_LINE, Analyser, Analysis

CUBE = pathlib.Path(__file__).resolve().parent.parent / "configs" / "calibration-cube.gcode"
AREA_175 = math.pi * 0.875 ** 2  # mm², 1.75 mm filament


def analyse(text: str | bytes, **kwargs: object) -> Analysis:
    analyser = Analyser(**kwargs)  # type: ignore[arg-type]
    analyser.feed(text.encode() if isinstance(text, str) else text)
    return analyser.finish()


def length(result: Analysis, tool: str = "tool0") -> float:
    return result.filament[tool]["length"]


# ---------------------------------------------------------------------------------------------
# a tiny file worked out by hand

TINY = """\
; tiny test print
G90
M82
G28                 ; home: (0, 0, 0)
G1 Z0.2 F600        ; 0.2 mm at 10 mm/s = 0.02 s
G1 X10 Y0 E1 F1200  ; 10 mm at 20 mm/s = 0.5 s, extruding
G1 X10 Y10 E2       ; 10 mm at 20 mm/s = 0.5 s, extruding

G1 E1 F2400         ; retract 1 mm at 40 mm/s = 0.025 s
G0 X13 Y14 F6000    ; 3-4-5 travel at 100 mm/s = 0.05 s
G1 E2 F2400         ; unretract = 0.025 s
G4 P500             ; 0.5 s
G4 S1               ; 1 s
"""


def test_tiny_file_matches_the_hand_computation():
    result = analyse(TINY)
    assert result.lines == 11
    assert result.estimated_print_time == pytest.approx(0.02 + 0.5 + 0.5 + 0.025 + 0.05
                                                        + 0.025 + 0.5 + 1)
    assert result.filament == {"tool0": {"length": pytest.approx(2.0),
                                         "volume": pytest.approx(2 * AREA_175 / 1000)}}
    assert result.printing_area == {"minX": 0, "maxX": 10, "minY": 0, "maxY": 10,
                                    "minZ": 0.2, "maxZ": 0.2}
    assert result.dimensions == {"width": 10, "depth": 10, "height": 0}
    assert result.travel_area == {"minX": 0, "maxX": 13, "minY": 0, "maxY": 14,
                                  "minZ": 0, "maxZ": 0.2}
    assert result.travel_dimensions == {"width": 13, "depth": 14, "height": 0.2}


def test_to_api_is_octoprints_gcode_analysis_model():
    api = analyse(TINY).to_api()
    assert set(api) == {"estimatedPrintTime", "filament", "printingArea", "dimensions",
                        "travelArea", "travelDimensions", "lines"}
    assert api["lines"] == 11
    assert api["estimatedPrintTime"] == pytest.approx(2.62)
    assert set(api["filament"]["tool0"]) == {"length", "volume"}
    assert api["printingArea"]["maxY"] == 10
    assert api["dimensions"] == {"width": 10, "depth": 10, "height": 0}


# ---------------------------------------------------------------------------------------------
# extrusion modes, resets and retractions: program -> filament length of tool0


@pytest.mark.parametrize(("program", "expected"), [
    pytest.param("G1 X10 E5\nG1 X20 E8", 8, id="absolute E by default"),
    pytest.param("M83\nG1 X10 E1\nG1 X20 E1", 2, id="M83 relative E"),
    pytest.param("M83\nM82\nG1 X10 E1\nG1 X20 E1", 1, id="M82 back to absolute E"),
    pytest.param("G91\nG1 X10 E1\nG1 X10 E1", 2, id="G91 makes E relative too"),
    pytest.param("M83\nG90\nG1 X10 E1\nG1 X20 E1", 1, id="G90 makes E absolute again"),
    pytest.param("G91\nM82\nG1 X1 E1\nG1 X1 E1", 1, id="M82 after G91"),
    pytest.param("G1 X10 E5\nG92 E0\nG1 X20 E5", 10, id="G92 E0 resets"),
    pytest.param("G1 X10 E5\nG92 E100\nG1 X20 E102", 7, id="G92 E to any value"),
    pytest.param("G1 X10 E5\nG92\nG1 X5 E1", 6, id="bare G92 zeroes E"),
    pytest.param("G1 X10 E5\nG1 E3\nG1 E5\nG1 X20 E8", 8, id="retract and unretract"),
    pytest.param("M83\nG1 X10 E5\nG1 E-2\nG1 X20 E1", 4, id="relative retract subtracts"),
    pytest.param("M83\nG1 E-2", 0, id="net retraction reports zero"),
    pytest.param("G1X10E5\nG01 X20 E6", 6, id="glued words and G01"),
    pytest.param("N1 G1 X10 E5*99\nn2 g1 x20 e6 ; lower case", 6, id="line numbers, case"),
])
def test_filament_length(program, expected):
    result = analyse(program)
    assert length(result) == pytest.approx(expected)
    assert result.filament["tool0"]["volume"] == pytest.approx(expected * AREA_175 / 1000)


# ---------------------------------------------------------------------------------------------
# time: program -> estimated seconds


@pytest.mark.parametrize(("program", "kwargs", "expected"), [
    pytest.param("G1 X50", {}, 1.0, id="default 3000 mm/min"),
    pytest.param("G1 X10 F600\nG1 X20", {}, 2.0, id="F persists"),
    pytest.param("G1 F600\nG1 X10", {}, 1.0, id="F-only line sets the feedrate"),
    pytest.param("G1 X10 F0\nG1 X20", {}, 0.4, id="F0 is ignored"),
    pytest.param("G1 F 600\nG1 X 10", {}, 1.0, id="space between letter and number"),
    pytest.param("G91\nG1 X10 F600\nG1 X10\nG90\nG1 X10", {}, 3.0, id="G91 then G90"),
    pytest.param("G1 E10 F600", {}, 1.0, id="extrude-only uses E distance"),
    pytest.param("G1 X3 Y4 Z12 F780", {}, 1.0, id="XYZ distance, 13 mm at 13 mm/s"),
    pytest.param("G1 X10 F600\nG1 X10", {}, 1.0, id="no movement, no time"),
    pytest.param("G2 X10 Y0 I5 J0 F600", {}, 1.0, id="arc as a straight line"),
    pytest.param("G1 X10 Y10\nG28 X\nG1 Y20 F600", {}, math.sqrt(200) / 50 + 1,
                 id="G28 X homes only X"),
    pytest.param("G1 X10 Y10 Z10\nG28\nG1 X0 Y0 Z10 F600", {}, math.sqrt(300) / 50 + 1,
                 id="bare G28 homes every axis"),
    pytest.param("G4 P500", {}, 0.5, id="dwell P milliseconds"),
    pytest.param("G4 S2", {}, 2.0, id="dwell S seconds"),
    pytest.param("G4 P500 S2", {}, 2.0, id="dwell S wins over P"),
    pytest.param("G1 Z10 F6000", {"max_feedrate_mm_s": {"z": 5}}, 2.0, id="axis cap"),
    pytest.param("G1 X30 Y40 F6000", {"max_feedrate_mm_s": {"x": 30}}, 50 / 50, id="cap by share"),
    pytest.param("G1 X100 F6000", {"speed_factor": 2.0}, 0.5, id="speed factor"),
])
def test_estimated_print_time(program, kwargs, expected):
    assert analyse(program, **kwargs).estimated_print_time == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------
# tools, areas, line counting


def test_two_tools_count_filament_separately():
    result = analyse("T0\nG1 X10 E5\nT1\nG92 E0\nG1 X20 E3\nT0\nG92 E0\nG1 X30 E1\n",
                     filament_diameter=2.85)
    assert set(result.filament) == {"tool0", "tool1"}
    assert length(result, "tool0") == pytest.approx(6)
    assert length(result, "tool1") == pytest.approx(3)
    assert result.filament["tool1"]["volume"] == pytest.approx(3 * math.pi * 1.425 ** 2 / 1000)


def test_tool_parameter_of_another_command_does_not_select_a_tool():
    result = analyse("M104 T1 S200\nG1 X10 E5\n")
    assert set(result.filament) == {"tool0"}


def test_no_extrusion_has_a_travel_area_but_no_printing_area():
    result = analyse("G28\nG1 X10 Y20 Z5 F6000\n")
    assert result.printing_area is None
    assert result.dimensions is None
    assert result.filament == {}
    assert result.travel_area == {"minX": 0, "maxX": 10, "minY": 0, "maxY": 20,
                                  "minZ": 0, "maxZ": 5}
    api = result.to_api()
    assert "printingArea" not in api and "dimensions" not in api
    assert api["travelDimensions"] == {"width": 10, "depth": 20, "height": 5}


def test_empty_input_gives_an_empty_analysis():
    result = analyse(b"")
    assert result == Analysis(lines=0, estimated_print_time=0.0, filament={},
                              printing_area=None, dimensions=None, travel_area=None)
    assert result.to_api() == {"estimatedPrintTime": 0.0, "filament": {}, "lines": 0}


def test_printing_area_covers_start_and_end_of_extruding_moves_only():
    result = analyse("G1 X50 Y50 Z0.3 F6000\nG1 X60 Y50 E1\nG1 X100 Y100\n")
    assert result.printing_area == {"minX": 50, "maxX": 60, "minY": 50, "maxY": 50,
                                    "minZ": 0.3, "maxZ": 0.3}
    assert result.travel_area is not None and result.travel_area["maxX"] == 100


@pytest.mark.parametrize(("program", "lines"), [
    ("; only a comment\n\n   \n\t\n", 0),
    ("G1 X1 ; move\n  ;indented comment\nM104 S200\n", 2),
    ("G28\r\nG1 X1\r\n", 2),
    ("G1 X1", 1),  # no final newline
    ("M117 hello ; world\nunknown words count too\n", 2),
])
def test_comments_and_blank_lines_are_not_counted(program, lines):
    assert analyse(program).lines == lines


# ---------------------------------------------------------------------------------------------
# streaming


def test_one_byte_at_a_time_equals_the_whole_file():
    data = CUBE.read_bytes()
    whole = analyse(data)
    analyser = Analyser()
    for i in range(len(data)):
        analyser.feed(data[i:i + 1])
    assert analyser.finish() == whole


@pytest.mark.parametrize("size", [2, 7, 100, 4096])
def test_any_chunk_size_equals_the_whole_file(size):
    data = TINY.encode() * 3
    analyser = Analyser()
    for i in range(0, len(data), size):
        analyser.feed(data[i:i + size])
    assert analyser.finish() == analyse(data)


@pytest.mark.parametrize("size", [1, 2, 3, 4096])
def test_a_utf8_bom_at_the_start_is_skipped(size):
    data = b"G1 X10 E1 F1200\nG1 X20 E2\n"  # the first line counts: it extrudes 1 mm
    analyser = Analyser()
    bom = b"\xef\xbb\xbf" + data
    for i in range(0, len(bom), size):
        analyser.feed(bom[i:i + size])
    result = analyser.finish()
    assert result == analyse(data) and length(result) == pytest.approx(2)


def test_junk_and_non_utf8_bytes_are_skipped():
    data = b"\xff\xfe\x00garbage\nG1 X10 E1 ; caf\xc3\xa9\n\x80\x81\x82\nG1 XNAN E5\nG1 X20 E2\n"
    result = analyse(data)
    assert length(result) == pytest.approx(2)
    assert result.printing_area is not None and result.printing_area["maxX"] == 20


def test_a_line_without_newline_is_bounded():
    analyser = Analyser()
    for _ in range(100):
        analyser.feed(b"X" * 10_000)  # a megabyte of junk with no newline
    assert analyser.buffered <= MAX_LINE
    analyser.feed(b"\nG1 X10 E1\n")
    assert length(analyser.finish()) == pytest.approx(1)


def test_feed_after_finish_is_refused():
    analyser = Analyser()
    analyser.feed(b"G1 X1\n")
    first = analyser.finish()
    assert analyser.finish() == first
    with pytest.raises(LocalProtocolError):
        analyser.feed(b"G1 X2\n")


@pytest.mark.parametrize("kwargs", [{"filament_diameter": 0}, {"speed_factor": -1}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match="positive"):
        Analyser(**kwargs)


# ---------------------------------------------------------------------------------------------
# the bundled sample


def test_calibration_cube_gives_plausible_numbers():
    result = analyse(CUBE.read_bytes())
    assert result.lines > 1000
    assert 60 < result.estimated_print_time < 4 * 3600
    assert 100 < length(result) < 10_000
    for area in (result.printing_area, result.travel_area):
        assert area is not None
        assert all(0 <= v <= 200 for v in area.values())
    assert result.dimensions is not None
    assert result.dimensions["height"] == pytest.approx(19.8)  # layers 0.2 .. 20
