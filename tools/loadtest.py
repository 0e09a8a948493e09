#!/usr/bin/env python3
"""REST load during a print, run by hand: does the print keep its priority?

Starts the virtual printer (`printpipe virtual --record`) and `printpipe serve` as processes of
their own on 127.0.0.1, starts a print, measures the printer's lines/s from its record for
--warmup seconds, then runs --clients keep-alive clients (httpx on trio, one connection each,
polling GET /api/printer, /api/job and /api/version as fast as they are answered; a 503 is not
waited out unless --honor-retry-after) for --seconds, and measures lines/s again without load.
With --phases N the load comes in N bursts of --seconds/N, each followed by as long without
load (the clients keep their connections, idle). A loaded phase lasts until the last request
sent in it is answered. Reports one JSON line:

  unloaded_lps, loaded_lps, after_lps   lines/s before, during and after the load (after:
                                        every unloaded phase but the first)
  fraction                              loaded_lps / lines/s of all unloaded phases
  answered, refused, other              200s, 503s carrying Retry-After, anything else
  p50_ms, p99_ms                        latency of the answered requests (200)
  cpu_us_per_request                    the server's CPU during the load, less what the lines
                                        printed meanwhile took (its unloaded CPU per line),
                                        per request (answered and refused)

    python tools/loadtest.py                        # 200 clients, 20 s
    python tools/loadtest.py --clients 20 --seconds 10

Only 127.0.0.1; the clients and the time are bounded. The load generator runs niced (--nice)
so that on a small machine it competes with the server less than a client on another machine
would not at all.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import attrs
import httpx
import trio

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import wait_for_link  # noqa: E402 (tools/, this script's folder)

from pipeline.virtual.pair import sample_gcode  # noqa: E402

KEY = "loadtest-key-0123456789abcdef"
PATHS = ("/api/printer", "/api/job", "/api/version")
MAX_CLIENTS = 1000
MAX_SECONDS = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid`, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Record:
    """The virtual printer's record, read as it grows: the lines it accepted so far."""

    def __init__(self, path: str) -> None:
        self.path, self.offset, self.lines = path, 0, 0

    def count(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return 0
        end = data.rfind(b"\n") + 1
        self.offset += end
        self.lines += data.count(b"\n", 0, end)
        return self.lines


async def lines_per_s(record: Record, seconds: float) -> float:
    start_lines, start = record.count(), time.monotonic()
    await trio.sleep(seconds)
    return (record.count() - start_lines) / (time.monotonic() - start)


#: One TLS context for every client (never used: plain HTTP), made once: httpx would make
#: one per client, which takes longer than the requests.
TLS = ssl.create_default_context()


@attrs.define(eq=False)
class Load:
    """What the clients share: the gate they wait at between phases, and the tallies."""
    honor: bool
    open: trio.Event = attrs.Factory(trio.Event)  # set: send requests
    done: bool = False
    inflight: int = 0
    idle: trio.Event = attrs.Factory(trio.Event)  # set whenever no request is in flight
    latencies: list[float] = attrs.Factory(list)
    refused: int = 0
    errors: list[str] = attrs.Factory(list)


async def client_loop(url: str, load: Load) -> None:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=url, headers={"X-Api-Key": KEY}, limits=limits,
                                 timeout=30, verify=TLS) as client:
        i = 0
        while True:
            await load.open.wait()
            if load.done:
                return
            path = PATHS[i % len(PATHS)]
            i += 1
            start = time.monotonic()
            load.inflight += 1
            try:
                r = await client.get(path)
            except httpx.HTTPError as exc:
                load.errors.append(type(exc).__name__)
                continue
            finally:
                load.inflight -= 1
                if not load.inflight:
                    load.idle.set()
            if r.status_code == 200:
                load.latencies.append(time.monotonic() - start)
            elif r.status_code == 503 and r.headers.get("Retry-After", "").isdigit():
                load.refused += 1
                if load.honor:
                    await trio.sleep(int(r.headers["Retry-After"]))
            else:
                load.errors.append(str(r.status_code))


@attrs.define
class Tally:
    lines: int = 0
    seconds: float = 0.0
    cpu: float = 0.0

    @property
    def lps(self) -> float:
        return self.lines / self.seconds if self.seconds else 0.0


async def measure(args: argparse.Namespace, url: str, record: Record, server_pid: int,
                  gcode: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, headers={"X-Api-Key": KEY}, timeout=30) as c:
        with trio.fail_after(30):
            while (await c.get("/api/connection")).json()[  # noqa: ASYNC110 (polls a process)
                    "current"]["state"] != "Operational":
                await trio.sleep(0.1)
        r = await c.post("/api/files/local", data={"print": "true"},
                         files={"file": ("load.gcode", gcode.encode())})
        r.raise_for_status()
        with trio.fail_after(60):
            while record.count() < 200:  # noqa: ASYNC110 (another process writes it)
                await trio.sleep(0.05)
            # the upload's analysis takes a share of the CPU while it runs: not measured
            while "gcodeAnalysis" not in (  # noqa: ASYNC110 (polls a process)
                    await c.get("/api/files/local/load.gcode")).json():
                await trio.sleep(0.1)
        await trio.sleep(args.settle)  # the print's first seconds run slower
        load = Load(args.honor_retry_after)
        idle, loaded = Tally(), Tally()
        burst = args.seconds / args.phases
        pause = args.warmup if args.phases == 1 else burst

        async def phase(tally: Tally, seconds: float, last: bool = False) -> None:
            lines0, cpu0, t0 = record.count(), cpu_seconds(server_pid), time.monotonic()
            if tally is loaded:  # the clients send until the end, and their last answers
                load.open.set()
                await trio.sleep(seconds)
                load.open = trio.Event()
                load.done = last
                if last:
                    load.open.set()
                while load.inflight:
                    load.idle = trio.Event()
                    await load.idle.wait()
            else:
                await trio.sleep(seconds)
            tally.lines += record.count() - lines0
            tally.seconds += time.monotonic() - t0
            tally.cpu += cpu_seconds(server_pid) - cpu0

        async with trio.open_nursery() as nursery:
            for _ in range(args.clients):
                nursery.start_soon(client_loop, url, load)
            await phase(idle, pause)
            first = attrs.evolve(idle)
            for k in range(args.phases):
                await phase(loaded, burst, last=k == args.phases - 1)
                await phase(idle, pause)
        rest = Tally(idle.lines - first.lines, idle.seconds - first.seconds)
        left = len(gcode.splitlines()) - record.count()
        await c.post("/api/job", json={"command": "cancel"})
    lat = sorted(load.latencies)
    requests = len(lat) + load.refused
    cpu_per_line = idle.cpu / max(idle.lines, 1)
    return {
        "clients": args.clients, "seconds": args.seconds, "phases": args.phases,
        "unloaded_lps": round(first.lps, 1), "loaded_lps": round(loaded.lps, 1),
        "after_lps": round(rest.lps, 1),
        "fraction": round(loaded.lps / idle.lps, 3) if idle.lps else 0.0,
        "answered": len(lat), "refused": load.refused, "other": len(load.errors),
        "other_kinds": sorted(set(load.errors))[:5],
        "p50_ms": round(1000 * statistics.median(lat), 2) if lat else None,
        "p99_ms": round(1000 * lat[int(len(lat) * 0.99)], 2) if lat else None,
        "cpu_us_per_request": round(1e6 * (loaded.cpu - cpu_per_line * loaded.lines)
                                    / requests, 1) if requests else None,
        "server_cpu_share": round(loaded.cpu / loaded.seconds, 2),
        "file_left": left > 0,
    }


def start(argv: list[str], **kwargs: Any) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, "-m", "pipeline.app.cli", *argv], cwd=ROOT,
                            env=env, text=True, **kwargs)


def run(args: argparse.Namespace) -> dict[str, Any]:
    gcode = sample_gcode(args.lines, seed=5)
    with tempfile.TemporaryDirectory() as tmp:
        link, record = os.path.join(tmp, "printer"), os.path.join(tmp, "record.txt")
        port = free_port()
        cfg = os.path.join(tmp, "serve.yaml")
        with open(cfg, "w") as f:
            f.write(f"printer:\n  port: {link}\n  baudrate: 250000\n"
                    f"http:\n  host: 127.0.0.1\n  port: {port}\n  api_key: {KEY}\n"
                    f"{args.http_yaml}"
                    f"storage:\n  folder: {tmp}/files\n  state: {tmp}/state\n")
        printer = start(["virtual", "--link", link, "--record", record],
                        stdout=subprocess.DEVNULL)
        server = None
        try:
            wait_for_link(link)
            server = start(["serve", "-c", cfg], stdout=subprocess.PIPE,
                           stderr=None if args.verbose else subprocess.DEVNULL)
            assert server.stdout is not None
            for line in server.stdout:
                if "serving the API on" in line:
                    break
            else:
                raise SystemExit("the server did not start")
            os.nice(args.nice)
            return trio.run(measure, args, f"http://127.0.0.1:{port}", Record(record),
                            server.pid, gcode)
        finally:
            for proc in (server, printer):
                if proc is not None:
                    proc.send_signal(signal.SIGTERM)
            for proc in (server, printer):
                if proc is not None:
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=3.0,
                   help="seconds of unloaded printing measured before and after the load")
    p.add_argument("--settle", type=float, default=2.0,
                   help="seconds of printing before the first measurement")
    p.add_argument("--lines", type=int, default=300_000, help="lines of the printed file")
    p.add_argument("--phases", type=int, default=1,
                   help="split the load into this many bursts, with unloaded phases as long "
                   "between them (the print's rate drifts on a busy machine: comparing "
                   "interleaved phases is steadier)")
    p.add_argument("--nice", type=int, default=0, help="niceness of the load generator")
    p.add_argument("--honor-retry-after", action="store_true",
                   help="clients wait a 503's Retry-After (default: they retry at once)")
    p.add_argument("--http-yaml", default="",
                   help="more lines of the server's http section, e.g. "
                   "'  max_concurrent_requests: 4\\n'")
    p.add_argument("-v", "--verbose", action="store_true", help="show the server's log")
    args = p.parse_args()
    if not 0 < args.phases <= 100:
        p.error("--phases: 1 to 100")
    if not 0 < args.clients <= MAX_CLIENTS or not 0 < args.seconds <= MAX_SECONDS:
        p.error(f"at most {MAX_CLIENTS} clients and {MAX_SECONDS:g} s")
    print(json.dumps(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
