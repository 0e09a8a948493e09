"""Nothing but the printer's own failure ends the printer's tasks. During a print on the
virtual printer, each service beside the printer fails (a failure injected into the print
log, the config subscriptions, the MQTT bridge, the HTTP server): the print finishes with
every file line delivered once, in order, the failure is one log line naming the service, and
the service answers again. And when the link is torn down with a print running anyway (a crash
that escapes every boundary), its last act stops the file and switches the heaters off."""

from __future__ import annotations

import contextlib
import logging

import httpx
import pytest
import trio
from conftest import load_yaml, open_printer
from http_fixtures import lines_received, serve_for_test
from mqtt_fixtures import free_port
from sample_prints import write_sample

from pipeline.app.mqtt.bridge import Bridge
from pipeline.events.names import Event
from pipeline.fanout.subscriptions import SubscriptionRunner
from pipeline.link.serial import LAST_ACT
from pipeline.link.virtual import serve_virtual_printer
from pipeline.virtual.pair import expected_commands, sample_gcode
from pipeline.virtual.spec import FirmwareSpec

GCODE = sample_gcode(6000, seed=3)


def once(fn):
    """`fn`, except that its first call raises RuntimeError("injected failure")."""
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected failure")
        return fn(*args, **kwargs)
    wrapper.calls = calls
    return wrapper


def inject_print_log(monkeypatch):
    import pipeline.app.printers.runtime as service
    fail = once(service.log_print)
    monkeypatch.setattr(service, "log_print", fail)
    return "the print log", lambda control: len(fail.calls) >= 2  # it logged the end too


def inject_subscriptions(monkeypatch):
    """The runner fails on PrintStarted; once started again it handles the next one."""
    fail = once(SubscriptionRunner.handle)
    monkeypatch.setattr(SubscriptionRunner, "handle", fail)

    def handled_again(control) -> bool:
        if len(fail.calls) < 2:
            control.publish(Event.PRINT_STARTED, {"name": "again"})
        return len(fail.calls) >= 2
    return "the event subscriptions", handled_again


def inject_mqtt(monkeypatch):
    """The bridge fails, and so does its own restart: that reaches its boundary."""
    monkeypatch.setattr("pipeline.app.mqtt.bridge.STATUS_INTERVAL", 0.05)
    monkeypatch.setattr("pipeline.app.mqtt.bridge.RESTART_DELAY", 0.01)
    status = once(Bridge.publish_status)
    monkeypatch.setattr(Bridge, "publish_status", status)
    monkeypatch.setattr(Bridge, "restart", once(Bridge.restart))
    return "the MQTT bridge", lambda control: len(status.calls) >= 5  # polling again


def inject_http(monkeypatch):
    """The HTTP server itself fails (not one connection, which stays in that connection): its
    pacer raises once the first request waits for its turn (a print runs)."""
    import pipeline.app.http.server as server
    real = server.Pacer.run
    made = []

    async def run(self) -> None:
        made.append(1)
        if len(made) == 1:
            await self.wake.wait()
            raise RuntimeError("injected failure")
        await real(self)
    monkeypatch.setattr(server.Pacer, "run", run)
    return "the HTTP server", lambda control: len(made) >= 2


@pytest.mark.parametrize("inject", [inject_print_log, inject_subscriptions, inject_mqtt,
                                    inject_http], ids=["print-log", "subscriptions", "mqtt",
                                                       "http"])
async def test_a_failing_service_ends_neither_the_print_nor_the_service(
        tmp_path, monkeypatch, caplog, inject):
    monkeypatch.setattr("pipeline.app.supervise.RESTART_MIN", 0.05)
    extra = (f"mqtt:\n  host: 127.0.0.1\n  port: {free_port()}\n"
             if inject is inject_mqtt else "")
    extra += ("events:\n  subscriptions:\n    - event: PrintStarted\n      type: gcode\n"
              "      command: M117 started\n")
    caplog.set_level(logging.INFO)
    name, recovered = inject(monkeypatch)
    async with serve_for_test(tmp_path, extra) as srv:
        control = srv.service
        (tmp_path / "job.gcode").write_text(GCODE)
        control.select(str(tmp_path / "job.gcode"), "job.gcode")
        await control.start()
        if inject is inject_http:  # a request while the file prints: then the server fails
            with contextlib.suppress(httpx.TransportError):
                await srv.client.get("/api/printer")
            assert control.status().job.active
        result = await control.wait_job_end(60)
        assert result is not None and result.error is None, result
        with trio.fail_after(10):  # the service is back
            while not recovered(control):
                with contextlib.suppress(httpx.TransportError):  # (the HTTP server's restart)
                    await srv.client.get("/api/version")
                await trio.sleep(0.02)
        r = await srv.client.get("/api/printer")
        assert r.status_code == 200 and r.json()["state"]["text"] == "Operational"
        assert lines_received(srv, GCODE) == expected_commands(GCODE)
    failures = [r.getMessage() for r in caplog.records
                if r.name == "printpipe.service" and r.levelno >= logging.ERROR]
    assert len(failures) == 1, failures
    assert failures[0].startswith(f"{name} failed: RuntimeError: injected failure (at ")
    assert failures[0].endswith("; starting it again in 0.05 s (the printer is not affected)")


async def crash_mid_print(tmp_path, extra: str = "") -> tuple[list[str], list[str], float]:
    """Print on a virtual printer that outlives the host; a bug escapes the host's body once
    the printer took 300 lines. Returns the expected file commands, what the printer
    accepted, and how long the link's teardown took."""
    path, expected = write_sample(tmp_path, 3000)
    async with trio.open_nursery() as outer:
        handle = await outer.start(serve_virtual_printer, FirmwareSpec())
        config = load_yaml(f"printer:\n  port: {handle.device}\n{extra}")
        began = None
        try:
            async with open_printer(config) as printer:
                await printer.start_print(path)
                job = printer.core.jobs.job
                await printer.wait_until(lambda: job.line_no >= 300, 20, poll=0.01)
                began = trio.current_time()
                raise RuntimeError("a bug")
        except RuntimeError as exc:
            assert str(exc) == "a bug" and began is not None  # noqa: PT017
        took = trio.current_time() - began
        await trio.sleep(0.1)  # the printer reads what was written last
        accepted = list(handle.firmware.accepted)
        outer.cancel_scope.cancel()
    return expected, accepted, took


async def test_a_crash_mid_print_stops_the_file_and_switches_the_heaters_off(tmp_path):
    expected, accepted, took = await crash_mid_print(tmp_path)
    wanted = set(expected)
    last = max(i for i, line in enumerate(accepted) if line in wanted)
    taken = [line for line in accepted if line in wanted]
    assert taken == expected[:len(taken)] and len(taken) < len(expected) // 2
    assert {"M104 T0 S0", "M140 S0"} <= set(accepted[last + 1:])
    assert took <= LAST_ACT + 0.5


async def test_heaters_off_on_exit_false_leaves_the_heaters_alone(tmp_path):
    expected, accepted, _ = await crash_mid_print(
        tmp_path, "serial:\n  heaters_off_on_exit: false\n")
    wanted = set(expected)
    last = max(i for i, line in enumerate(accepted) if line in wanted)
    assert not {"M104 T0 S0", "M140 S0"} & set(accepted[last + 1:])
