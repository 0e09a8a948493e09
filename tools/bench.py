#!/usr/bin/env python3
"""Streaming benchmark: prints a generated slicer-like file to the virtual printer running in
its own process (`printpipe virtual`) over a real pty, and reports the host's figures as one
JSON line: lines, wall_s, lines_per_s, cpu_us_per_line (this process's CPU only),
rss_peak_mb and exact (the printer received every file command exactly once, in order).

    python tools/bench.py --lines 20000 --runs 5
    python tools/bench.py --lines 20000 --corrupt 0.01 --lost-ok 0.001 --busy 0.01
    python tools/bench.py --lines 20000 --noop-stages 5     # 5 no-op stages on every phase
    python tools/bench.py --lines 20000 --slow-subscription PrintStarted,ZChange  # sleep 30
    python tools/bench.py --lines 20000 --mqtt 127.0.0.1:1883   # the MQTT bridge on
    python tools/bench.py --lines 20000 --mqtt 127.0.0.1:1883 --mqtt-flood 2000  # + events/s
    python tools/bench.py --lines 20000 --marlin --window auto  # Marlin's serial model, real time
    python tools/bench.py --simulated --lines 20000   # window 1, auto and 4 on the Marlin model,
                                                      # in simulated time (the in-memory Pair)

With --mqtt the figures add the bridge's counters during the print (mqtt_published,
mqtt_dropped, mqtt_per_s); --mqtt-flood publishes that many extra events per second on the
bus while printing, to find the rate the bridge sustains without dropping.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import trio

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pipeline.config.reader import HostConfig, load_config  # noqa: E402
from pipeline.virtual.pair import sample_gcode  # noqa: E402
from stages import stage_phases, stage_schemas  # noqa: E402

PHASES = ("comm.protocol.gcode.queuing", "comm.protocol.gcode.queued",
          "comm.protocol.gcode.sending", "comm.protocol.gcode.sent")


def host_yaml(args: argparse.Namespace, link: str) -> str:
    text = f"printer:\n  port: {link}\n  baudrate: 250000\nserial:\n  send_window: {args.window}\n"
    text += "  timeouts:\n    communication: 2.0\n    temperature: 1.0\n"
    if args.noop_stages:
        text += "pipeline:\n"
        for phase in PHASES:
            text += f"  {phase}:\n"
            for i in range(args.noop_stages):
                text += f"    - handler: pipeline.virtual.pair:noop_stage\n      id: noop{i}\n"
    if args.mqtt:
        host, _, port = args.mqtt.rpartition(":")
        text += f"mqtt:\n  host: {host}\n  port: {port}\n  client_id: bench\n"
    if args.slow_subscription:
        text += "events:\n  shutdown_grace: 0.5\n  subscriptions:\n"
        for event in args.slow_subscription.split(","):
            text += f"    - event: {event}\n      type: system\n      command: sleep 30\n"
    return text


def virtual_yaml(args: argparse.Namespace) -> str:
    return ("virtual:\n  faults:\n"
            f"    seed: {args.seed}\n    corrupt_rate: {args.corrupt}\n"
            f"    lost_ok_rate: {args.lost_ok}\n    busy_rate: {args.busy}\n"
            f"    lost_line_rate: {args.lost_line}\n    ok_delay: {args.ok_delay}\n"
            f"  marlin:\n    enabled: {'true' if args.marlin else 'false'}\n"
            f"    move_time: {args.move_time}\n")


def _mqtt_counters(control: Any) -> dict[str, float]:
    source = control.metrics_sources.get("mqtt")
    return {name: value for name, _, _, value in source()} if source else {}


async def _flood(control: Any, per_s: float) -> None:
    """`per_s` ZChange events a second on the bus, in bursts every 10 ms."""
    burst, z = max(1, round(per_s / 100)), 0.0
    while True:
        for _ in range(burst):
            z += 0.01
            control.publish("ZChange", {"new": round(z, 2), "old": round(z - 0.01, 2)})
        await trio.sleep(0.01)


async def host_run(config: HostConfig, path: str, flood: float = 0.0) -> dict[str, Any]:
    from pipeline.app.service import open_service
    async with open_service(config) as control:
        await control.connect()
        control.select(path)
        if config.mqtt is not None:
            for _ in range(200):  # up to 10 s for the broker connection
                if _mqtt_counters(control).get("mqtt_connected"):
                    break
                await trio.sleep(0.05)
        m0 = _mqtt_counters(control)
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        await control.start()
        printer = control.session
        job = printer.core.jobs.job if printer is not None else None
        assert job is not None, "start() made the file job"
        async with trio.open_nursery() as nursery:
            if flood:
                nursery.start_soon(_flood, control, flood)
            result = await control.wait_job_end()
            nursery.cancel_scope.cancel()
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        stats = printer.core.statistics() if printer is not None else None
        figures = {"lines": job.line_no, "wall_s": round(wall, 3),
                   "lines_per_s": round(job.line_no / wall, 1),
                   "cpu_us_per_line": round(cpu * 1e6 / max(job.line_no, 1), 2),
                   "outcome": result.outcome.value if result else None,
                   "probes": stats.probes if stats else None,
                   "resends": stats.resends if stats else None}
        if config.mqtt is not None:
            m1 = _mqtt_counters(control)
            sent = m1["mqtt_messages_published_total"] - m0["mqtt_messages_published_total"]
            lost = m1["mqtt_messages_dropped_total"] - m0["mqtt_messages_dropped_total"]
            bus = {s.name: s.dropped for s in control.bus.statistics()}.get("mqtt", 0)
            figures |= {"mqtt_published": sent, "mqtt_dropped": lost + bus,
                        "mqtt_per_s": round(sent / wall, 1)}
        return figures


#: Commands the host itself adds around a print (handshake, polls, markers, the SD card's
#: mount, autoreport and listing at connect): allowed in the printer's record between file
#: commands, nothing else is.
INJECTED = {"M110 N0", "M115", "M155 S2", "M105", "M400", "M113 S2", "M114", "M108", "M21",
            "M27 S1", "M20 L", "M27", "M20", ""}


def iter_commands(path: str) -> Iterator[str]:
    """The file's commands, comment-stripped, without holding the file in memory."""
    from pipeline.gcode import strip_comment
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            c = strip_comment(line)
            if c:
                yield c


def exactly_once_in_order(record: str, gcode_path: str, start: int = 0) -> bool:
    """Streams both files: every file command once, in order, only host commands between
    (the record from byte `start` on)."""
    expected = iter_commands(gcode_path)
    nxt = next(expected, None)
    with open(record) as f:
        f.seek(start)
        for line in f:
            got = line.rstrip("\n")
            if got == nxt:
                nxt = next(expected, None)
            elif got not in INJECTED:
                return False
    return nxt is None


def wait_for_link(link: str, timeout: float = 10.0) -> None:
    """Until `printpipe virtual` made its pty's symlink `link`."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(link):
        if time.monotonic() > deadline:
            raise SystemExit("the virtual printer did not start")
        time.sleep(0.02)


def run_once(args: argparse.Namespace, gcode_path: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        link, record = os.path.join(tmp, "printer"), os.path.join(tmp, "record.txt")
        vcfg = os.path.join(tmp, "virtual.yaml")
        with open(vcfg, "w") as f:
            f.write(virtual_yaml(args))
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.app.cli", "virtual", "-c", vcfg,
                                 "--link", link, "--record", record], cwd=ROOT,
                                stdout=subprocess.DEVNULL)
        try:
            wait_for_link(link)
            config = load_config(host_yaml(args, link), "bench.yaml",
                                 stage_schemas=stage_schemas(), stage_phases=stage_phases())
            figures = trio.run(host_run, config, gcode_path, args.mqtt_flood)
            figures["rss_peak_mb"] = round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
            deadline = time.monotonic() + 10
            while True:  # the printer process flushes its record every 50 ms
                figures["exact"] = exactly_once_in_order(record, gcode_path)
                if figures["exact"] or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        finally:
            proc.terminate()
            proc.wait(5)
    return figures


def simulated_run(args: argparse.Namespace, text: str, window: str,
                  faults: str) -> dict[str, Any]:
    """One print of `text` on the Pair with Marlin's model; figures in simulated time."""
    from pipeline.hooks.registry import build_pipeline
    from pipeline.session.filejob import FileJob, JobFile
    from pipeline.virtual.pair import Pair, expected_commands
    from stages import BUILTIN_STAGES

    yaml = (f"serial:\n  send_window: {window}\nvirtual:\n  marlin:\n    enabled: true\n"
            f"    move_time: {args.move_time}\n  faults:\n    seed: {args.seed}\n{faults}")
    config = load_config(yaml, "bench.yaml", stage_schemas=stage_schemas(),
                         stage_phases=stage_phases())
    p = Pair(config, build_pipeline(config.pipeline, BUILTIN_STAGES))
    p.connect()
    data = text.encode()
    job = FileJob(JobFile("bench.gcode", "bench.gcode", len(data)))
    job.feed(data)
    job.feed(b"")
    t0, c0 = p.clock.now, time.process_time()
    p.core.jobs.start(job)
    p.run_until(lambda: p.core.jobs.result is not None and not p.core.jobs.active,
                max_time=3600)
    took = p.clock.now - t0
    expected = expected_commands(text)
    it = iter(expected)
    nxt = next(it, None)
    exact = not getattr(p.fw, "fragments_run", 0)  # a rest of a cut line ran: out of place
    for a in p.fw.accepted:
        if a == nxt:
            nxt = next(it, None)
        elif a not in INJECTED:
            exact = False
    e = p.core.engine
    return {"window": window, "lines": len(expected), "sim_s": round(took, 2),
            "lines_per_s": round(len(expected) / took, 1), "exact": exact and nxt is None,
            "rx_lost": getattr(p.fw, "rx_lost", None), "resends": e.resends.requests,
            "fragments_run": getattr(p.fw, "fragments_run", None),
            "probes": e.deadlines.probes_total,
            "pair_cpu_us_per_line": round((time.process_time() - c0) * 1e6 / len(expected), 1)}


def simulated(args: argparse.Namespace) -> int:
    """Lines per second in simulated time on the Marlin model (the Pair's manual clock: no
    host CPU in it), for window 1, auto and 4, clean and with faults; one JSON line each.
    Window 4 is unsafe on Marlin (a line error's flush makes rests of lines run: not exact
    with faults); the exit status is 1 only when window 1 or auto is not exact."""
    from pipeline.gcode import frame
    from pipeline.virtual.pair import expected_commands

    text = sample_gcode(args.lines, seed=args.seed)
    expected = expected_commands(text)
    nbytes = sum(len(frame(i + 1, c)) for i, c in enumerate(expected))
    wire = len(expected) / (nbytes / 25000.0)
    corrupt = args.corrupt or 0.01
    lost_ok = args.lost_ok or 0.001
    faulty = (f"    corrupt_rate: {corrupt}\n    lost_ok_rate: {lost_ok}\n"
              f"    lost_line_rate: {args.lost_line}\n")
    named = (f"{corrupt:.1%} corrupt, {lost_ok:.1%} lost oks, "
             f"{args.lost_line:.1%} lost lines")
    ok = True
    for window in ("1", "auto", "4"):
        for name, faults in (("none", ""), (named, faulty)):
            r = simulated_run(args, text, window, faults)
            r["faults"] = name
            r["of_wire"] = round(r["lines_per_s"] / wire, 3)
            ok = ok and (r["exact"] or window == "4")
            print(json.dumps(r))
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=1, help="report the median of this many runs")
    ap.add_argument("--ok-delay", type=float, default=0.0, help="firmware seconds per move")
    ap.add_argument("--corrupt", type=float, default=0.0, help="fraction of corrupted lines")
    ap.add_argument("--lost-ok", type=float, default=0.0, help="fraction of lost oks")
    ap.add_argument("--busy", type=float, default=0.0, help="fraction answered with busy lines")
    ap.add_argument("--window", default="auto",
                    help="serial.send_window: auto or a number of lines in flight")
    ap.add_argument("--lost-line", type=float, default=0.0, help="fraction of lost lines")
    ap.add_argument("--marlin", action="store_true",
                    help="the virtual printer runs Marlin's serial model (RX buffer, BUFSIZE 4, "
                         "ADVANCED_OK, 250000 baud simulated)")
    ap.add_argument("--move-time", type=float, default=0.001,
                    help="with --marlin: seconds per planned move")
    ap.add_argument("--simulated", action="store_true",
                    help="window 1 vs auto on the Marlin model on the in-memory Pair, clean and "
                         "with --corrupt/--lost-ok (defaults 1%% and 0.1%%), in simulated time")
    ap.add_argument("--noop-stages", type=int, default=0,
                    help="no-op handler stages declared on each gcode phase")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--slow-subscription", metavar="EVENTS",
                    help="add a `sleep 30` system subscription on these events (comma list)")
    ap.add_argument("--file", help="print this file instead of a generated one")
    ap.add_argument("--mqtt", metavar="HOST:PORT", help="run the MQTT bridge to this broker")
    ap.add_argument("--mqtt-flood", type=float, default=0.0, metavar="PER_S",
                    help="with --mqtt: publish this many extra events a second while printing")
    args = ap.parse_args()
    if args.simulated:
        return simulated(args)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.file
        if path is None:
            path = os.path.join(tmp, "bench.gcode")
            with open(path, "w") as f:
                f.write(sample_gcode(args.lines, seed=args.seed))
        runs = [run_once(args, path) for _ in range(args.runs)]
    out = {k: statistics.median(r[k] for r in runs)
           for k in ("lines", "wall_s", "lines_per_s", "cpu_us_per_line", "rss_peak_mb")}
    out["exact"] = all(r["exact"] for r in runs)
    out["probes"] = [r["probes"] for r in runs]
    out["resends"] = [r["resends"] for r in runs]
    out["runs"] = len(runs)
    out["window"] = args.window
    out["noop_stages"] = args.noop_stages
    out["slow_subscription"] = args.slow_subscription
    if args.mqtt:
        for k in ("mqtt_published", "mqtt_dropped", "mqtt_per_s"):
            out[k] = statistics.median(r[k] for r in runs)
        out["mqtt_flood"] = args.mqtt_flood
    if len(runs) > 1:
        out["cpu_us_per_line_all"] = [r["cpu_us_per_line"] for r in runs]
    print(json.dumps(out))
    return 0 if out["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
