"""Figures for the SD card (run by hand): upload rate to the virtual printer's card in KB/s of
the local file, in text mode and in Marlin's binary file transfer, at simulated 115200 and
250000 baud (Marlin's serial model on the in-memory Pair: simulated time, so the figure is
the wire's and the protocol's, not this machine's); and the host's CPU per line of an SD
print (the host only polls M27 or reads the autoreport; the printer reads the file).

    PYTHONPATH=. python tools/sd_bench.py [--lines 60000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pairs import pair  # type: ignore[import-not-found]  # noqa: E402

from pipeline.virtual.pair import sample_gcode  # noqa: E402


def marlin(baud: int, autoreport: int = 1) -> str:
    return (f"serial:\n  sd:\n    autoreport_interval: {autoreport}\n"
            f"virtual:\n  marlin:\n    enabled: true\n    baudrate: {baud}\n")


def upload_rate(baud: int, binary: bool, data: bytes) -> float:
    p = pair(marlin(baud))
    sd = p.core.sd
    sd.binary = binary
    up = sd.start_upload(local="bench.gcode", size=len(data), remote="bench.gco")
    up.feed(data)
    up.feed(b"")
    t0 = p.clock.now
    p.run_until(lambda: sd.upload is None and p.core.idle, max_time=36000)
    assert sd.last_upload is not None and sd.last_upload[2] == "", sd.last_upload
    return len(data) / 1024 / (p.clock.now - t0)


def sd_print_cpu(lines: int, polling: bool) -> tuple[float, int, int]:
    p = pair(marlin(250000, 0 if polling else 1))
    f = p.fw.card.create("cube.gco")
    f.data += sample_gcode(lines, seed=1).encode()
    core = p.core
    core.sd.refresh()
    p.run_until(lambda: core.sd.find("cube.gco") is not None)
    spent = [0.0]
    for name in ("receive_data", "data_to_send", "handle_timeout", "on_written"):
        fn = getattr(core, name)

        def timed(*a: Any, _fn: Callable[..., Any] = fn) -> Any:
            t = time.process_time()
            try:
                return _fn(*a)
            finally:
                spent[0] += time.process_time() - t
        setattr(core, name, timed)
    core.sd.select("cube.gco", print_after=True)
    next_poll = [p.clock.now]

    def done() -> bool:
        if polling and p.clock.now >= next_poll[0]:
            next_poll[0] = p.clock.now + core.sd.poll_interval()
            core.sd.poll()
        return core.jobs.result is not None and not core.jobs.active

    p.run_until(done, max_time=36000)
    return spent[0] / p.fw.sd_executed * 1e6, p.fw.sd_executed, len(p.wire)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=60000)
    args = ap.parse_args()
    data = sample_gcode(args.lines, seed=2).encode()
    print(f"upload of {len(data) / 1024:.0f} KB (Marlin model, simulated time):")
    for baud in (115200, 250000):
        text = upload_rate(baud, False, data)
        binary = upload_rate(baud, True, data)
        wire = baud / 10 / 1024
        print(f"  {baud:>6} baud (wire {wire:.1f} KB/s): text {text:.1f} KB/s, "
              f"binary {binary:.1f} KB/s")
    for polling in (False, True):
        us, n, writes = sd_print_cpu(args.lines // 2, polling)
        how = "M27 polling every 1 s" if polling else "M27 autoreport"
        print(f"SD print, {how}: host CPU {us:.2f} us per printed line "
              f"({n} lines, {writes} writes by the host)")


if __name__ == "__main__":
    main()
