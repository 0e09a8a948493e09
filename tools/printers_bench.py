#!/usr/bin/env python3
"""Several printers through one `printpipe serve`: the figures of issue 22, run by hand.

Four virtual printers served on ptys (`printpipe virtual`, one process each, the last two on
Marlin's serial model at 250 kbaud), one `printpipe serve` driving them all. Each printer
prints its own generated file alone (the others idle), then all four print at once; each print
is checked exact against the printer's `--record` (every file command once, in order). Also
the serve process's startup to HTTP ready and its RSS with 1 printer and with 4 (idle and
connected, and its peak over the whole run), and its CPU per line while all four print.

    python tools/printers_bench.py                 # 4 printers, 20k lines each
    python tools/printers_bench.py --lines 2000 --printers 2

Prints one JSON object per line: each phase's lines/s per printer, then the summary (the
together/alone ratios, whose goal is >= 0.9; rss_4_over_1, whose goal is <= 1.5).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

from bench import exactly_once_in_order, wait_for_link  # noqa: E402

from pipeline.virtual.pair import sample_gcode  # noqa: E402

KEY = "bench-key-0123456789abcdef"
MARLIN = "virtual:\n  marlin:\n    enabled: true\n    baudrate: 250000\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def proc_status(pid: int, field: str) -> float:
    """A /proc/PID/status field in MB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def virtual_printers(tmp: str, names: list[str]) -> Iterator[dict[str, tuple[str, str]]]:
    """One `printpipe virtual` per name; (pty link, record file) by name."""
    procs, out = [], {}
    try:
        for i, name in enumerate(names):
            link, record = os.path.join(tmp, f"{name}.pty"), os.path.join(tmp, f"{name}.rec")
            cfg = os.path.join(tmp, f"{name}.virtual.yaml")
            with open(cfg, "w") as f:
                f.write(MARLIN if i >= 2 else "")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "pipeline.app.cli", "virtual", "-c", cfg, "--link", link,
                 "--record", record], cwd=ROOT, stdout=subprocess.DEVNULL))
            out[name] = (link, record)
        for link, _ in out.values():
            wait_for_link(link)
        yield out
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def service_yaml(tmp: str, port: int, printers: dict[str, tuple[str, str]]) -> str:
    text = (f"http:\n  host: 127.0.0.1\n  port: {port}\n  api_key: {KEY}\n"
            f"storage:\n  folder: {tmp}/files\n  state: {tmp}/state\nprinters:\n")
    for name, (link, _) in printers.items():
        text += f"  {name}:\n    port: {link}\n    baudrate: 250000\n"
    return text


@contextmanager
def serving(tmp: str, printers: dict[str, tuple[str, str]]) -> Iterator[dict[str, Any]]:
    """`printpipe serve` of `printers`: its pid, URL, startup to HTTP ready and idle RSS once
    every printer is connected."""
    port = free_port()
    cfg = os.path.join(tmp, f"serve-{len(printers)}.yaml")
    with open(cfg, "w") as f:
        f.write(service_yaml(tmp, port, printers))
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.app.cli", "serve", "-c", cfg],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = httpx.Client(base_url=url, headers={"X-Api-Key": KEY}, timeout=30)
        while True:
            try:
                client.get("/api/printers")
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.perf_counter() - t0 > 60:
                    raise SystemExit("printpipe serve did not start") from None
                time.sleep(0.01)
        ready = time.perf_counter() - t0
        while not all(r["state"] == "Operational"
                      for r in client.get("/api/printers").json()["printers"]):
            time.sleep(0.05)
        time.sleep(2.0)  # idle a moment: temperature polls, the first analyses
        yield {"pid": proc.pid, "client": client, "ready_s": round(ready, 2),
               "rss_idle_mb": round(proc_status(proc.pid, "VmRSS"), 1)}
    finally:
        proc.terminate()
        proc.wait(30)


def print_at_once(run: dict[str, Any], files: dict[str, str],
                  records: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Start every file's print on its printer at once; lines/s and exactness of each."""
    client: httpx.Client = run["client"]
    starts = {name: os.path.getsize(records[name]) for name in files}
    began = {}
    for name in files:
        r = client.post(f"/printers/{name}/api/files/local/{name}.gcode",
                        json={"command": "select", "print": True})
        r.raise_for_status()
        began[name] = time.perf_counter()
    took: dict[str, float] = {}
    while len(took) < len(files):
        for name in files:
            if name in took:
                continue
            job = client.get(f"/printers/{name}/api/job").json()
            if job["state"] == "Operational" and job["progress"]["completion"] == 100:
                took[name] = time.perf_counter() - began[name]
        time.sleep(0.02)
    out = {}
    for name, path in files.items():
        with open(path) as f:
            lines = sum(1 for _ in f)
        exact = False
        deadline = time.monotonic() + 10
        while not exact and time.monotonic() < deadline:  # the record is flushed every 50 ms
            exact = exactly_once_in_order(records[name], path, starts[name])
            time.sleep(0.1)
        out[name] = {"lines": lines, "wall_s": round(took[name], 2),
                     "lines_per_s": round(lines / took[name], 1), "exact": exact}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=20000)
    ap.add_argument("--printers", type=int, default=4)
    args = ap.parse_args()
    names = [f"p{i + 1}" for i in range(args.printers)]
    with tempfile.TemporaryDirectory() as tmp, virtual_printers(tmp, names) as printers:
        files = {}
        os.makedirs(f"{tmp}/files")
        for i, name in enumerate(names):
            files[name] = f"{tmp}/files/{name}.gcode"
            with open(files[name], "w") as f:
                f.write(sample_gcode(args.lines, seed=100 + i))
        records = {name: rec for name, (_, rec) in printers.items()}
        with serving(tmp, {names[0]: printers[names[0]]}) as one:
            single = {"ready_s": one["ready_s"], "rss_idle_mb": one["rss_idle_mb"]}
        with serving(tmp, printers) as run:
            alone: dict[str, Any] = {}
            for name in names:
                alone |= print_at_once(run, {name: files[name]}, records)
            print(json.dumps({"phase": "alone", **alone}), flush=True)
            cpu0 = cpu_seconds(run["pid"])
            together = print_at_once(run, files, records)
            cpu = cpu_seconds(run["pid"]) - cpu0
            print(json.dumps({"phase": "together", **together}), flush=True)
            peak = proc_status(run["pid"], "VmHWM")
            total = sum(r["lines"] for r in together.values())
            summary = {
                "phase": "summary", "printers": len(names), "marlin_250k": names[2:],
                "ratio_together_alone": {n: round(together[n]["lines_per_s"]
                                                  / alone[n]["lines_per_s"], 3) for n in names},
                "exact": all(r["exact"] for r in [*alone.values(), *together.values()]),
                "ready_s_1": single["ready_s"], f"ready_s_{len(names)}": run["ready_s"],
                "rss_idle_mb_1": single["rss_idle_mb"],
                f"rss_idle_mb_{len(names)}": run["rss_idle_mb"],
                f"rss_peak_mb_{len(names)}": round(peak, 1),
                f"rss_{len(names)}_over_1": round(run["rss_idle_mb"] / single["rss_idle_mb"], 2),
                "serve_cpu_us_per_line_together": round(cpu * 1e6 / total, 1),
                "serve_cpu_share_together": round(cpu / max(r["wall_s"]
                                                             for r in together.values()), 2)}
            print(json.dumps(summary), flush=True)
    return 0 if summary["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
