"""The event bus: never blocks the publisher, drops for slow subscribers (counted), keeps
order, holds events until Startup, delivers Shutdown last."""

from __future__ import annotations

import trio
import trio.testing

from pipeline.fanout.bus import EventBus


async def drain(sub, n):
    return [(await sub.receive()).name for _ in range(n)]


async def test_events_before_startup_come_after_it_in_order():
    bus = EventBus()
    sub = bus.subscribe("a")
    bus.publish("Connecting")
    bus.publish("Connected", {"port": "x"})
    bus.publish("Startup")
    assert await drain(sub, 3) == ["Startup", "Connecting", "Connected"]


async def test_a_subscriber_that_never_reads_loses_events_without_blocking_anyone():
    bus = EventBus()
    bus.publish("Startup")
    bus.subscribe("stuck", size=4)  # never read
    live = bus.subscribe("live", size=10_000)
    with trio.testing.assert_no_checkpoints():
        for i in range(1000):
            bus.publish("ZChange", {"new": i})
    (s_stuck, s_live) = bus.statistics()
    assert (s_stuck.delivered, s_stuck.dropped) == (4, 996)
    assert (s_live.delivered, s_live.dropped) == (1000, 0)
    got = [(await live.receive()).payload["new"] for _ in range(1000)]
    assert got == list(range(1000))


async def test_filtered_subscription_and_shutdown_is_last():
    bus = EventBus()
    sub = bus.subscribe("f", events=["PrintDone"])
    bus.publish("Startup")
    bus.publish("PrintStarted")
    bus.publish("PrintDone", {"time": 1.0})
    bus.publish("Shutdown")
    bus.publish("PrintStarted")  # after Shutdown: nothing more
    names = [ev.name async for ev in sub]
    assert names == ["PrintDone", "Shutdown"]


async def test_a_closed_subscriber_is_forgotten():
    bus = EventBus()
    bus.publish("Startup")
    a = bus.subscribe("a")
    a.close()
    bus.publish("Home")
    assert bus.statistics() == []
