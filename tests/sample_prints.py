"""Sample prints for the print tests: a slicer-like G-code file and the check that a printer
got each of its commands exactly once, in order."""

from __future__ import annotations

from pipeline.virtual.pair import expected_commands, sample_gcode


def write_sample(tmp_path, lines: int, seed: int = 1) -> tuple[str, list[str]]:
    """Write `lines` lines of sample G-code to tmp_path/job.gcode; returns its path and the
    commands a host must deliver for it."""
    text = sample_gcode(lines, seed=seed)
    path = tmp_path / "job.gcode"
    path.write_text(text)
    return str(path), expected_commands(text)


def file_lines(accepted: list[str], expected: list[str]) -> list[str]:
    """The accepted commands that are file commands (host-made ones such as M105 left out):
    equal to `expected` when each arrived exactly once, in order."""
    wanted = set(expected)
    return [a for a in accepted if a in wanted]
