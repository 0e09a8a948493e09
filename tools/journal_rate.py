#!/usr/bin/env python3
"""What the crash journal costs the SD card: prints a generated file on the built-in virtual
printer (slowed down to a real printer's pace with `--ok-delay`) for `--seconds`, then cancels,
and reports as one JSON line the journal's writes and bytes, the block IO this process caused
(/proc/self/io write_bytes: the journal's data pages; filesystem metadata and its journal come
on top), and both extrapolated to one hour of printing.

    python tools/journal_rate.py --seconds 60 --ok-delay 0.01 --layer-lines 1000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import trio

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pipeline.app.service import open_service  # noqa: E402
from pipeline.config.reader import load_config  # noqa: E402
from pipeline.virtual.pair import sample_gcode  # noqa: E402
from stages import stage_phases, stage_schemas  # noqa: E402


def io_written() -> int:
    with open("/proc/self/io", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("write_bytes"))


def job(lines: int, layer_lines: int) -> str:
    """The sample file with its layer changes every `layer_lines` lines."""
    out, z = [], 0.3
    for i, line in enumerate(sample_gcode(lines).splitlines()):
        if "layer change" in line:
            continue
        if i and i % layer_lines == 0:
            z = round(z + 0.2, 2)
            out.append(f"G1 Z{z} F1200")
        out.append(line)
    return "\n".join(out) + "\n"


async def measure(args: argparse.Namespace, folder: str) -> dict[str, float]:
    path = os.path.join(folder, "job.gcode")
    with open(path, "w", encoding="ascii") as f:  # noqa: ASYNC230 (before the run)
        f.write(job(args.lines, args.layer_lines))
    yaml = (f"storage:\n  state: {folder}/state\n  folder: {folder}\n"
            f"virtual:\n  faults:\n    ok_delay: {args.ok_delay}\n")
    config = load_config(yaml, "journal_rate.yaml", stage_schemas=stage_schemas(),
                         stage_phases=stage_phases())
    async with open_service(config) as control:
        await control.connect()
        control.select(path)
        io0, t0 = io_written(), trio.current_time()
        await control.start()
        await control.wait_job_end(args.seconds)
        seconds = trio.current_time() - t0
        lines = control.status().job.lines  # type: ignore[union-attr]
        io1 = io_written()
        control.cancel()
        await control.wait_job_end(10)
        journal = control.recovery.file
    per_hour = 3600 / seconds
    return {"seconds": round(seconds, 1), "lines_per_s": round(lines / seconds, 1),
            "layer_s": round(args.layer_lines / (lines / seconds), 1),
            "writes": journal.writes, "bytes": journal.bytes_written,
            "bytes_per_write": round(journal.bytes_written / max(journal.writes, 1)),
            "io_write_bytes": io1 - io0,
            "writes_per_hour": round(journal.writes * per_hour),
            "bytes_per_hour": round(journal.bytes_written * per_hour),
            "io_bytes_per_hour": round((io1 - io0) * per_hour)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--ok-delay", type=float, default=0.01, help="seconds per command")
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--layer-lines", type=int, default=1000, help="lines per layer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print(json.dumps(trio.run(measure, args, folder)))


if __name__ == "__main__":
    main()
