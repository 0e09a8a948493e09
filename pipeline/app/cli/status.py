"""`printpipe status [-c CONFIG]`: one line per printer of the running service (name, state,
file, progress, temperatures), read over its API (`GET /api/printers` on the main port, with
the service's key from the config or its state folder, as `printpipe keys show` finds it).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, TextIO

import httpx

from pipeline.app.keys import KeyStore, KeyStoreError
from pipeline.app.paths import config_relative
from pipeline.config.printers import ServiceConfig

#: Seconds the service gets to answer.
TIMEOUT = 5.0


def service_url(config: ServiceConfig) -> str:
    """The main port's URL as seen from this machine."""
    host = config.http.host
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{config.http.port}" if ":" in host else \
        f"http://{host}:{config.http.port}"


def run_status(config: ServiceConfig, *, out: TextIO | None = None,
               err: TextIO | None = None, url: str | None = None) -> int:
    """Print the printers of the service `config` describes; 1 with one line when it cannot
    be asked. `url`: the main port's, when it is not the configured one (tests, port 0)."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    first = next(iter(config.printers.values()))
    store = KeyStore(config_relative(first, config.storage.state))
    try:
        key = config.http.api_key or store.master()
    except KeyStoreError as exc:
        print(f"printpipe status: {exc}", file=err)
        return 1
    url = url or service_url(config)
    try:
        answer = httpx.get(f"{url}/api/printers", headers={"X-Api-Key": key or ""},
                           timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        print(f"printpipe status: the service does not answer on {url} ({exc}): is it "
              "running (printpipe serve)?", file=err)
        return 1
    if answer.status_code != 200:
        print(f"printpipe status: {url}/api/printers answered {answer.status_code}: "
              f"{answer.text[:200]}", file=err)
        return 1
    rows = answer.json()["printers"]
    for row in rows:
        print(status_line(row), file=out)
    return 0


def status_line(row: Mapping[str, Any]) -> str:
    """`name  state  file  progress  heaters` for one printer of `GET /api/printers`."""
    state = row["state"] + (f" ({row['error']})" if row.get("error") else "")
    progress = "-" if row.get("progress") is None else f"{row['progress']:.1f}%"
    temps = " ".join(
        f"{heater} {_degrees(t.get('actual'))}/{_degrees(t.get('target'))}"
        for heater, t in sorted(row.get("temperatures", {}).items()))
    return "  ".join([row["name"], state, row.get("file") or "-", progress, temps or "-"])


def _degrees(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
