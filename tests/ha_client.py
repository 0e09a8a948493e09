"""Home Assistant's OctoPrint integration, replayed with the library it uses (pyoctoprintapi,
asyncio + aiohttp), in its own process so its event loop never meets trio's.

    python tests/ha_client.py URL[,URL...] KEY SCENARIO[,SCENARIO...] [WINDOW]

Each URL in turn (a printer's own port, or its prefix on the main port: the client's `path`)
runs each scenario in turn, in one process.

Each step asserts what Home Assistant relies on and prints one JSON line `{"step": ...}`; the
first failed assertion prints `{"failed": step, "error": ...}` and exits 1. The scenarios:

- `setup`: the config flow (app-key probe, server, discovery uuid, webcam, tracking).
- `connect`: connect the printer (unless it is), then poll as the coordinator does through the first
  WINDOW seconds (2.5: past Marlin's first 2 s autoreport; a test with a shorter autoreport
  passes less): every temperature sensor must be a number (HA rounds it), never null.
- `print`: a print is running: the sensors and binary sensors, then the pause, resume and
  stop buttons, each followed by the state HA then shows.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp
from pyoctoprintapi import OctoprintClient
from pyoctoprintapi.exceptions import PrinterOffline


def step(name: str, **facts: object) -> None:
    print(json.dumps({"step": name, **facts}), flush=True)


async def poll(what: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await what():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def coordinator(client: OctoprintClient) -> tuple:
    """One update of HA's data coordinator: the printer (None when offline) and the job."""
    try:
        printer = await client.get_printer_info()
    except PrinterOffline:
        printer = None
    return printer, await client.get_job_info()


def sensors(printer, job) -> dict[str, object]:
    """What HA's sensors show for one update (homeassistant/components/octoprint)."""
    out: dict[str, object] = {}
    if printer is not None:
        out["status"] = printer.state.text
        out["printing"] = printer.state.flags.printing
        out["print error"] = printer.state.flags.error
        for temp in printer.temperatures:  # one sensor per tool and the bed
            out[f"{temp.name} actual"] = round(temp.actual_temp, 2)
            target = temp.target_temp
            out[f"{temp.name} target"] = round(target, 2) if target is not None else None
    completion = job.progress.completion
    out["job percentage"] = round(completion, 2) if completion is not None else 0
    out["current file"] = job.job.file.name
    out["print time"] = job.progress.print_time
    out["time left"] = job.progress.print_time_left
    return out


async def setup(client: OctoprintClient, session: aiohttp.ClientSession, url: str) -> None:
    assert await client._api.check_appkeys_enabled() is True
    step("app keys enabled")
    server = await client.get_server_info()
    assert server.version and server.safe_mode is None, (server.version, server.safe_mode)
    step("server", version=server.version)
    discovery = await client.get_discovery_info()
    assert discovery is not None and len(discovery.upnp_uuid) == 36
    step("discovery", uuid=discovery.upnp_uuid)
    webcam = await client.get_webcam_info()
    assert webcam is not None and webcam.enabled is False
    step("webcam")
    assert await client.get_tracking_info() is None
    step("tracking")


async def connect(client: OctoprintClient, window: float) -> None:
    """(Connected already, by another of the printer's URLs: HA's polling only.)"""
    try:
        await client.get_printer_info()
    except PrinterOffline:
        await client.connect()
    step("connect")
    seen: dict[str, object] = {}
    started = time.monotonic()
    while time.monotonic() - started < window or "bed actual" not in seen:
        assert time.monotonic() - started < 15, "no temperatures reported"
        printer, job = await coordinator(client)
        seen.update(sensors(printer, job))  # round(None) would raise here
        await asyncio.sleep(0.02)
    assert seen["status"] == "Operational" and seen["job percentage"] == 0
    step("sensors after connect", tool0=seen["tool0 actual"], bed=seen["bed actual"])


async def printing(client: OctoprintClient) -> None:
    async def state_is(text: str) -> bool:
        printer, _ = await coordinator(client)
        return printer is not None and printer.state.text == text

    await poll(lambda: state_is("Printing"))
    printer, job = await coordinator(client)
    now = sensors(printer, job)
    assert now["printing"] is True and now["print error"] is False
    assert now["current file"] == "ha.gcode" and isinstance(now["print time"], int)
    step("printing", percentage=now["job percentage"])
    await client.pause_job()
    await poll(lambda: state_is("Paused"))
    _, job = await coordinator(client)
    assert job.state == "Paused" and 0 < job.progress.completion < 100
    step("paused")
    await client.resume_job()
    await poll(lambda: state_is("Printing"))
    step("resumed")
    await client.cancel_job()
    await poll(lambda: state_is("Operational"))
    printer, job = await coordinator(client)
    now = sensors(printer, job)
    assert now["printing"] is False and now["job percentage"] == 0
    assert now["current file"] == "ha.gcode"  # still selected, as in OctoPrint
    step("cancelled")


async def main(urls: str, key: str, scenarios: str) -> None:
    for url in urls.split(","):
        parts = urlsplit(url)
        async with aiohttp.ClientSession() as session:
            client = OctoprintClient(parts.hostname, session, parts.port, False,
                                     parts.path.rstrip("/") + "/")
            client.set_api_key(key)
            for scenario in scenarios.split(","):
                step(f"{scenario} on {url}")
                if scenario == "setup":
                    await setup(client, session, url)
                elif scenario == "connect":
                    await connect(client, float(sys.argv[4]) if len(sys.argv) > 4 else 2.5)
                else:
                    await printing(client)


if __name__ == "__main__":
    try:
        asyncio.run(main(*sys.argv[1:4]))
    except (AssertionError, Exception) as exc:  # noqa: BLE001 (reported to the test)
        print(json.dumps({"failed": True, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
        sys.exit(1)
