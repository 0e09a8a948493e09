#!/usr/bin/env python3
"""Startup and idle footprint of `printpipe serve`: starts it on a free port with the given
config, measures the time until GET /api/version answers, then the process's RSS after it has
idled a few seconds. Prints one JSON line.

    python tools/startup.py -c configs/virtual.yaml --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_once(config: str, idle: float) -> dict[str, float]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "startup.yaml")
        with open(config) as f:
            text = f.read()
        text = text.replace("  port: 5000", f"  port: {port}")
        text = text.replace("~/.printpipe/files", os.path.join(tmp, "files"))
        text = text.replace("~/.printpipe/state", os.path.join(tmp, "state"))
        scripts = os.path.join(ROOT, "configs", "scripts")
        text = text.replace("folder: scripts", f"folder: {scripts}")
        with open(cfg, "w") as f:
            f.write(text)
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.app.cli", "serve", "-c", cfg],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/version",
                                                timeout=1) as r:
                        r.read()
                except urllib.error.HTTPError:  # 401: it answers
                    break
                except OSError:
                    if time.perf_counter() - t0 > 20:
                        raise SystemExit("printpipe serve did not answer within 20 s") from None
                    time.sleep(0.01)
                    continue
                break
            ready = time.perf_counter() - t0
            time.sleep(idle)
            rss = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(20)
    return {"ready_s": round(ready, 3), "idle_rss_mb": round(rss, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-c", "--config", default=os.path.join(ROOT, "configs", "virtual.yaml"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--idle", type=float, default=5.0, help="seconds to idle before the RSS")
    args = ap.parse_args()
    runs = [run_once(args.config, args.idle) for _ in range(args.runs)]
    out: dict[str, float | list[float]] = {
        k: statistics.median(r[k] for r in runs) for k in ("ready_s", "idle_rss_mb")}
    out["ready_s_all"] = [r["ready_s"] for r in runs]
    out["idle_rss_mb_all"] = [r["idle_rss_mb"] for r in runs]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
