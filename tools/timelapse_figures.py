"""Timelapse figures, run by hand (python tools/timelapse_figures.py from the repository):
the time a steady frame adds per layer at the default park settings (virtual printer with the
Marlin model, a local test webcam), the render time of 300 frames at 720p with the real ffmpeg,
and the CPU time per printed line while frames are taken vs without (interleaved runs)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent / "tests"),
                str(Path(__file__).resolve().parent.parent)]

import trio  # noqa: E402
from http_fixtures import serve_for_test  # type: ignore[import-not-found]  # noqa: E402
from webcam_fixtures import make_jpegs, webcam  # type: ignore[import-not-found]  # noqa: E402

from pipeline.config.camera import TimelapseSpec, WebcamSpec  # noqa: E402
from pipeline.timelapse.plan import ffmpeg_argv  # noqa: E402


def gcode(layers: int, moves: int) -> str:
    lines = ["G28", "G90", "M82", "G92 E0", "G1 Z0.3 F600", "G1 X10 Y10 F3000"]
    e = 0.0
    for n in range(layers):
        if n:
            lines.append(f"G1 Z{0.3 + 0.2 * n:.1f} F600")
        for i in range(moves):
            e += 0.05
            lines.append(f"G1 X{10 + (i % 50)} Y{10 + (i % 7)} E{e:.3f} F1200")
    return "\n".join(lines) + "\n"


async def one_print(tmp: Path, frames: list[bytes], mode: str, park: bool,
                    text: str) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one print."""
    extra = "  park:\n    enabled: true\n" if park else ""
    marlin = "virtual:\n  marlin:\n    enabled: true\n"
    async with webcam(frames) as cam:
        cfg = (f"webcam:\n  snapshot: {cam.url}\ntimelapse:\n  mode: {mode}\n  min_delay: 0\n"
               f"  interval: 0.05\n  render_after_print: false\n{extra}{marlin}")
        async with serve_for_test(tmp, cfg) as server:
            path = tmp / "f.gcode"
            path.write_text(text)
            server.service.select(str(path))
            t0, c0 = time.perf_counter(), time.process_time()
            await server.service.start()
            await server.service.wait_job_end(600)
            return time.perf_counter() - t0, time.process_time() - c0


async def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        frames = make_jpegs(root, 8, "640x480")
        layers = 20
        text = gcode(layers, 20)
        runs: dict[str, list[float]] = {"off": [], "park": []}
        for i in range(3):
            for key in runs:
                tmp = root / f"{key}{i}"
                tmp.mkdir()
                wall, _ = await one_print(tmp, frames, "zchange" if key == "park" else "off",
                                          key == "park", text)
                runs[key].append(wall)
        added = (min(runs["park"]) - min(runs["off"])) / layers
        print(f"steady frames: {added * 1000:.0f} ms added per layer "
              f"(off {min(runs['off']):.2f} s, parked {min(runs['park']):.2f} s, {layers} layers)")
        cpu: dict[str, list[float]] = {"off": [], "timed": []}
        long_text = gcode(10, 400)
        lines = long_text.count("\n")
        for i in range(3):
            for key in cpu:
                tmp = root / f"cpu{key}{i}"
                tmp.mkdir()
                _, c = await one_print(tmp, frames, key, False, long_text)
                cpu[key].append(c)
        for key, values in cpu.items():
            print(f"CPU per line, capture {key}: {min(values) / lines * 1e6:.1f} µs "
                  f"({lines} lines, best of 3)")
    render_figure()


def render_figure() -> None:
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i",
                        "testsrc=size=1280x720:rate=25", "-frames:v", "300",
                        os.path.join(d, "p-%d.jpg")], check=True)
        for i in range(1, 301):  # the timelapse numbering starts at 0
            os.rename(os.path.join(d, f"p-{i}.jpg"), os.path.join(d, f"p-{i - 1}.jpg"))
        t0 = time.perf_counter()
        argv = ffmpeg_argv(TimelapseSpec(), WebcamSpec(), os.path.join(d, "p-%d.jpg"),
                           os.path.join(d, "out.mp4"))
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        print(f"render: 300 frames at 720p in {time.perf_counter() - t0:.1f} s "
              "(libx264, 1 thread, nice 10)")


if __name__ == "__main__":
    trio.run(main)
