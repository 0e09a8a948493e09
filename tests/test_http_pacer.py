"""pipeline.app.http.server's Pacer, which decides when a connection may read a request: on trio's
autojump clock, with stand-ins for the connections. Without a print a free turn is taken at
once; while a print runs requests start at most RELEASES per PERIOD, round robin over clients;
a request that waited QUEUE_WAIT is refused (at most REFUSALS per PERIOD); at most `limit`
hold a turn, a client at most half of them. Over a real socket a refused request is answered
503 with Retry-After, raw, and its connection closed."""

from __future__ import annotations

import httpx
import trio
from test_http_server import start_server

from pipeline.app.http import server as http_server
from pipeline.app.http.server import PERIOD, QUEUE_WAIT, REFUSALS, RELEASES, Pacer


class Conn:
    """What the pacer reads of a Connection."""

    def __init__(self, client: str) -> None:
        self.client = client
        self.holding = False


async def ask(pacer: Pacer, conn: Conn, log: list[tuple[float, str, bool]]) -> None:
    """Take a turn like Connection.receive_some; log (time, client, granted)."""
    granted = pacer.take_now(conn) or await pacer.wait(conn)  # type: ignore[arg-type]
    log.append((trio.current_time(), conn.client, granted))


async def test_without_a_print_a_free_turn_is_taken_at_once(autojump_clock):
    pacer = Pacer(4, busy=lambda: False)
    a, b, c = Conn("a"), Conn("a"), Conn("a")
    with trio.testing.assert_no_checkpoints():
        assert pacer.take_now(a) and pacer.take_now(b)  # type: ignore[arg-type]
    assert not pacer.take_now(c)  # type: ignore[arg-type]  # "a" holds its half
    assert pacer.take_now(Conn("b"))  # type: ignore[arg-type]
    log: list[tuple[float, str, bool]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pacer.run)
        nursery.start_soon(ask, pacer, c, log)
        await trio.sleep(0.5)
        assert log == []
        pacer.give_back(a)  # type: ignore[arg-type]
        await trio.sleep(0.001)
        assert log == [(0.5, "a", True)]
        nursery.cancel_scope.cancel()
    assert pacer.active == 3


async def test_while_printing_requests_start_at_a_bounded_rate_round_robin(autojump_clock):
    pacer = Pacer(40, busy=lambda: True)
    conns = [Conn("a") for _ in range(6)] + [Conn("b"), Conn("c")]
    log: list[tuple[float, str, bool]] = []
    async with trio.open_nursery() as nursery:
        for conn in conns:
            nursery.start_soon(ask, pacer, conn, log)
            await trio.lowlevel.checkpoint()  # in this order
        nursery.start_soon(pacer.run)
        while len(log) < len(conns):
            await trio.sleep(PERIOD)
            for conn in conns:  # each answer starts at once
                pacer.give_back(conn)  # type: ignore[arg-type]
        nursery.cancel_scope.cancel()
    assert all(granted for _, _, granted in log), log
    times = [t for t, _, _ in log]
    for i in range(RELEASES, len(times)):
        assert times[i] - times[i - RELEASES] >= PERIOD * 0.999
    assert times[-1] < QUEUE_WAIT
    # "b" and "c" each came after five of "a"'s, and do not wait behind them
    assert [client for _, client, _ in log][:4] == ["a", "b", "c", "a"]


async def test_a_request_that_waited_too_long_is_refused_a_bounded_number_at_once(
        autojump_clock):
    pacer = Pacer(2, busy=lambda: True)
    held = [Conn("x"), Conn("y")]
    for conn in held:  # every turn is taken and kept
        pacer._grant(conn)  # type: ignore[arg-type]
    log: list[tuple[float, str, bool]] = []
    many = 4 * REFUSALS
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pacer.run)
        for _ in range(many):
            nursery.start_soon(ask, pacer, Conn("a"), log)
        await trio.sleep(QUEUE_WAIT * 0.99)
        assert log == []
        await trio.sleep(QUEUE_WAIT)
        nursery.cancel_scope.cancel()
    assert len(log) == many and not any(granted for _, _, granted in log)
    times = sorted(t for t, _, _ in log)
    assert times[0] >= QUEUE_WAIT
    for i in range(REFUSALS, many):
        assert times[i] - times[i - REFUSALS] >= PERIOD * 0.999
    assert pacer.queued == 0 and not pacer.waiting and not pacer.clients


async def test_a_waiter_whose_connection_ends_leaves_the_line(autojump_clock):
    pacer = Pacer(1, busy=lambda: True)
    holder = Conn("a")
    pacer._grant(holder)  # type: ignore[arg-type]
    log: list[tuple[float, str, bool]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pacer.run)
        async with trio.open_nursery() as waiting:
            waiting.start_soon(ask, pacer, Conn("b"), log)
            await trio.sleep(0.1)
            assert pacer.queued == 1
            waiting.cancel_scope.cancel()  # its connection ends
        assert pacer.queued == 0 and not pacer.waiting and not pacer.clients and log == []
        pacer.give_back(holder)  # type: ignore[arg-type]
        await ask(pacer, Conn("c"), log)  # the line is empty: the next one gets its turn
        assert [(client, granted) for _, client, granted in log] == [("c", True)]
        nursery.cancel_scope.cancel()


async def slow_until(release: trio.Event):
    """An ASGI app that holds its turn until `release`."""
    async def slow(scope, receive, send) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    return slow


async def read_to_end(sock: trio.socket.SocketType) -> bytes:
    answer = b""
    with trio.fail_after(5):
        while chunk := await sock.recv(4096):
            answer += chunk
    return answer


def assert_refused(answer: bytes) -> None:
    head = answer.split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 503 "), answer
    assert b"retry-after: 1" in head and b"connection: close" in head


async def test_a_refused_request_is_answered_503_raw_and_closed(monkeypatch):
    monkeypatch.setattr(http_server, "QUEUE_WAIT", 0.2)
    release = trio.Event()
    stop, done = trio.Event(), trio.Event()
    async with trio.open_nursery() as nursery:
        address = await start_server(nursery, await slow_until(release), stop, done,
                                     concurrency=1, busy=True)
        first, second = trio.socket.socket(), trio.socket.socket()
        await first.connect(address)
        await first.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        await trio.sleep(0.05)
        await second.connect(address)
        await second.send(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        start = trio.current_time()
        assert_refused(await read_to_end(second))  # then the end of the connection
        assert trio.current_time() - start >= 0.2
        release.set()
        with trio.fail_after(5):
            assert (await first.recv(4096)).startswith(b"HTTP/1.1 200 ")
        first.close()
        second.close()
        stop.set()


async def test_a_request_waiting_when_its_idle_connection_is_closed_is_refused(monkeypatch):
    # hypercorn closes a connection after keep_alive seconds without a request it has seen;
    # one waiting for its turn meanwhile gets its 503, not a closed socket
    monkeypatch.setattr(http_server, "QUEUE_WAIT", 5.0)
    release = trio.Event()
    stop, done = trio.Event(), trio.Event()
    async with trio.open_nursery() as nursery:
        address = await start_server(nursery, await slow_until(release), stop, done,
                                     concurrency=1, busy=True, keep_alive=0.3)
        first, second = trio.socket.socket(), trio.socket.socket()
        await first.connect(address)
        await first.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        await second.connect(address)
        await second.send(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        assert_refused(await read_to_end(second))
        release.set()
        first.close()
        second.close()
        stop.set()


async def test_each_request_of_a_keep_alive_connection_waits_its_turn(monkeypatch):
    monkeypatch.setattr(http_server, "PERIOD", 0.2)

    async def lingering(scope, receive, send) -> None:  # its task ends after the answer
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        await trio.sleep(0.3)

    stop, done = trio.Event(), trio.Event()
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as client:
        host, port = await start_server(nursery, lingering, stop, done, busy=True)
        start = trio.current_time()
        for _ in range(3):  # the first at once, then one per PERIOD
            assert (await client.get(f"http://{host}:{port}/")).status_code == 200
        assert trio.current_time() - start >= 2 * 0.2
        stop.set()
