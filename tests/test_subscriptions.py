"""Config subscriptions at run time, with real subprocesses: payload values reach programs as
literal arguments (with and without a shell), failures and timeouts are logged and the next
firing works, missing placeholders skip one subscription, concurrency is bounded, and at
Shutdown running commands get their grace period."""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
import textwrap

import pytest
import trio
from conftest import load_yaml

from pipeline.events.placeholders import FiringContext
from pipeline.fanout.bus import EventBus
from pipeline.fanout.subscriptions import SubscriptionRunner

DUMP = os.path.join(os.path.dirname(__file__), "argv_dump.py")
PY = shlex.quote(sys.executable)


def events_spec(subscriptions: str, **extra: str):
    head = "".join(f"  {k}: {v}\n" for k, v in extra.items())
    return load_yaml("events:\n" + head + "  subscriptions:\n"
                     + textwrap.indent(textwrap.dedent(subscriptions), "    ")).events


async def until(predicate, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


class Harness:
    def __init__(self, spec, ctx: FiringContext = FiringContext()) -> None:
        self.bus = EventBus()
        self.sent: list[tuple[list[str], frozenset[str]]] = []
        self.runner = SubscriptionRunner(spec, self.bus, send_gcode=self._send,
                                         context=lambda: ctx)

    def _send(self, lines, tags) -> bool:
        self.sent.append((lines, tags))
        return True


async def run_with(spec, body, ctx: FiringContext = FiringContext()) -> Harness:
    h = Harness(spec, ctx)
    async with trio.open_nursery() as nursery:
        await nursery.start(h.runner.run)
        h.bus.publish("Startup")
        await body(h)
        h.bus.publish("Shutdown")
    return h


HOSTILE = ["x; touch {canary}", "$(touch {canary})", "`touch {canary}`", "a b  c",
           "it's \"quoted\"", "*", "&& touch {canary} &&", "line\nbreak", "-rf ~"]


@pytest.mark.parametrize("shell", [False, True], ids=["no shell", "shell"])
async def test_payload_values_are_literal_arguments(tmp_path, shell):
    canary = tmp_path / "pwned"
    out = tmp_path / "argv.json"
    spec = events_spec(f"""\
        - event: FileAdded
          type: system
          shell: {'true' if shell else 'false'}
          command: {PY} {DUMP} {out} {{name}} {{path}} {{__filename}}
        """)
    values = [v.format(canary=canary) for v in HOSTILE]

    async def body(h: Harness) -> None:
        for value in values:
            h.bus.publish("FileAdded", {"name": value, "path": f"dir/{value}",
                                        "storage": "local", "type": ["machinecode"]})
            await until(lambda: h.runner.finished + h.runner.failed == 1)
            assert json.loads(out.read_text()) == [value, f"dir/{value}", "sel; $(x)"]
            h.runner.finished = 0

    await run_with(spec, body, FiringContext(filename="sel; $(x)"))
    assert not canary.exists()


async def test_a_failing_or_hanging_command_is_logged_and_the_next_firing_works(tmp_path, caplog):
    marker = tmp_path / "ran"
    spec = events_spec(f"""\
        - event: plugin_test_flaky
          type: system
          name: flaky
          timeout: 0.3
          command:
            - sh -c "exit $0" {{code}}
            - sleep {{sleep}}
            - touch {marker}
        """)

    async def body(h: Harness) -> None:
        h.bus.publish("plugin_test_flaky", {"code": "3", "sleep": "0"})
        await until(lambda: h.runner.failed == 1)
        h.bus.publish("plugin_test_flaky", {"code": "0", "sleep": "30"})
        await until(lambda: h.runner.failed == 2)
        assert not marker.exists()  # the first failure stops the rest of the list
        h.bus.publish("plugin_test_flaky", {"code": "0", "sleep": "0"})
        await until(lambda: h.runner.finished == 1)

    with caplog.at_level(logging.INFO, "printpipe.subscriptions"):
        with trio.fail_after(10):
            await run_with(spec, body)
    assert marker.exists()
    text = caplog.text
    assert "subscription 'flaky'" in text and "exited with 3" in text
    assert "timed out after 0.3s and was killed" in text


async def test_a_missing_placeholder_skips_only_that_subscription(tmp_path, caplog):
    out = tmp_path / "argv.json"
    spec = events_spec(f"""\
        - event: PrintPaused
          type: system
          name: wants-position
          command: {PY} {DUMP} {out} {{position[z]}}
        - event: PrintPaused
          type: system
          name: plain
          command: {PY} {DUMP} {out} {{name}} {{__progress}}
        """)

    async def body(h: Harness) -> None:
        h.bus.publish("PrintPaused", {"name": "a.gcode", "path": "a.gcode"})  # no position
        await until(lambda: h.runner.finished == 1)
        assert h.runner.skipped == 1

    with caplog.at_level(logging.WARNING, "printpipe.subscriptions"):
        await run_with(spec, body)
    assert json.loads(out.read_text()) == ["a.gcode", "0"]
    assert "subscription 'wants-position'" in caplog.text and "{position[z]}" in caplog.text


async def test_gcode_subscriptions_queue_tagged_commands():
    spec = events_spec("""\
        - event: ZChange
          type: gcode
          command:
            - M117 z={new}
            - M400
        - event: Dwell
          type: gcode
          command: M117 dwell
        """)

    async def body(h: Harness) -> None:
        h.bus.publish("ZChange", {"new": 0.4, "old": 0.2})
        h.bus.publish("Dwelling")
        await until(lambda: len(h.sent) == 2)

    h = await run_with(spec, body)
    (lines, tags), (lines2, _) = h.sent
    assert lines == ["M117 z=0.4", "M400"] and lines2 == ["M117 dwell"]
    assert tags == {"trigger:event", "event:ZChange"}


async def test_system_commands_run_concurrently_up_to_the_limit(tmp_path):
    spec = events_spec("""\
        - event: Alert
          type: system
          command: sleep 0.3
        """, max_concurrent="2")
    peak = 0

    async def body(h: Harness) -> None:
        nonlocal peak
        for _ in range(5):
            h.bus.publish("Alert")
        with trio.fail_after(10):
            while h.runner.finished < 5:
                peak = max(peak, h.runner.started - h.runner.finished)
                await trio.sleep(0.01)

    await run_with(spec, body)
    assert peak == 2


async def test_shutdown_gives_running_commands_a_bounded_grace_and_runs_shutdown_ones(
        tmp_path, caplog):
    done = tmp_path / "short-done"
    bye = tmp_path / "bye"
    spec = events_spec(f"""\
        - event: Home
          type: system
          command: sh -c "sleep 0.3; touch {done}"
        - event: Eject
          type: system
          command: sleep 30
        - event: Shutdown
          type: system
          command: touch {bye}
        """, shutdown_grace="1.0")

    async def body(h: Harness) -> None:
        h.bus.publish("Home")
        h.bus.publish("Eject")
        await until(lambda: h.runner.started == 2)

    start = trio.current_time()
    with caplog.at_level(logging.WARNING, "printpipe.subscriptions"):
        h = await run_with(spec, body)
    took = trio.current_time() - start
    assert done.exists() and bye.exists()  # finished within the grace; Shutdown's ran
    assert took < 5  # the sleep 30 was cut at the grace period
    assert h.runner.finished == 2
    assert "for Eject: still running when the grace period ended; killed" in caplog.text


async def test_disabled_subscriptions_and_disabled_events_do_nothing(tmp_path):
    marker = tmp_path / "m"
    spec = events_spec(f"""\
        - event: Home
          type: system
          enabled: false
          command: touch {marker}
        """)

    async def body(h: Harness) -> None:
        h.bus.publish("Home")
        await trio.sleep(0.2)

    h = await run_with(spec, body)
    assert not marker.exists() and h.runner.started == 0
    spec = events_spec(f"""\
        - event: Home
          type: system
          command: touch {marker}
        """, enabled="false")
    h = await run_with(spec, body)
    assert not marker.exists() and h.runner.started == 0
