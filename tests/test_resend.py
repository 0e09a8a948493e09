"""ResendTracker on its own: the history of numbered lines and the verdicts on `Resend: N`."""

from __future__ import annotations

import pytest

from pipeline.protocol.resend import ResendTracker, Verdict

LINE_NUMBER_ERROR = "Line Number is not Last Line Number+1, Last Line: 0"


def tracker(lines: range = range(1, 6), size: int = 50, max_repeats: int = 10) -> ResendTracker:
    t = ResendTracker(size, max_repeats)
    for n in lines:
        t.record(n, f"G1 X{n}")
    return t


def drain(t: ResendTracker) -> list[tuple[int, str]]:
    out = []
    while t.pending:
        out.append(t.take())
    return out


def test_accepted_request_queues_every_line_from_n_in_order():
    t = tracker()  # lines 1..5, current line 6
    assert not t.active and not t.pending
    assert t.request(3, 6, [3, 4, 5]) is Verdict.ACCEPTED
    assert t.active and t.pending
    assert drain(t) == [(3, "G1 X3"), (4, "G1 X4"), (5, "G1 X5")]
    assert t.active, "active until the next ok"
    t.on_ok()
    assert not t.active


def test_on_ok_keeps_the_resend_active_while_lines_are_queued():
    t = tracker()
    t.request(4, 6, [])
    t.on_ok()
    assert t.active
    t.take()
    t.on_ok()
    assert t.active
    t.take()
    t.on_ok()
    assert not t.active


@pytest.mark.parametrize(("size", "lines", "n", "verdict", "resent"), [
    (3, range(1, 6), 3, Verdict.ACCEPTED, [3, 4, 5]),   # oldest line still in the history
    (3, range(1, 6), 2, Verdict.NO_HISTORY, []),        # wrapped out of the history
    (50, range(1, 6), 1, Verdict.ACCEPTED, [1, 2, 3, 4, 5]),
    (50, range(1, 6), 7, Verdict.NO_HISTORY, []),       # a line in the future
    (50, range(1, 6), 0, Verdict.NO_HISTORY, []),       # before the first line
    (50, range(0), 1, Verdict.IGNORED, []),             # leftover: n == current line
    (50, range(0), 0, Verdict.NO_HISTORY, []),          # nothing recorded at all
])
def test_history_window(size, lines, n, verdict, resent):
    t = tracker(lines, size=size)
    current = lines.stop if len(lines) else 1
    assert t.request(n, current, []) is verdict
    assert [num for num, _ in drain(t)] == resent


def test_history_wraps_at_maxlen_and_keeps_numbers_and_text_aligned():
    t = tracker(range(1, 101), size=50)
    assert t.request(50, 101, []) is Verdict.NO_HISTORY
    assert t.request(51, 101, []) is Verdict.ACCEPTED
    taken = drain(t)
    assert taken[0] == (51, "G1 X51") and taken[-1] == (100, "G1 X100") and len(taken) == 50


def test_non_consecutive_record_restarts_the_history():
    t = tracker(range(1, 4))
    t.record(10, "M110 N10")  # the numbering jumped: older lines are useless now
    t.record(11, "G1 X11")
    assert t.request(2, 12, []) is Verdict.NO_HISTORY
    assert t.request(10, 12, []) is Verdict.ACCEPTED
    assert drain(t) == [(10, "M110 N10"), (11, "G1 X11")]


def test_clear_forgets_history_queue_and_state():
    t = tracker()
    t.request(2, 6, [])
    t.note_error("checksum mismatch")
    t.clear()
    assert not t.pending and not t.active and t.last_error is None
    assert t.request(2, 6, []) is Verdict.NO_HISTORY


@pytest.mark.parametrize(("queued_first", "verdict"), [(False, Verdict.IGNORED),
                                                       (True, Verdict.ACCEPTED)])
def test_request_for_the_current_line(queued_first, verdict):
    """No resend pending: a leftover (it got N-1 twice). Pending: the printer has everything,
    so nothing is left to resend."""
    t = tracker()
    if queued_first:
        t.request(4, 6, [])
    assert t.request(6, 6, []) is verdict
    assert not t.pending


def test_repeats_while_the_line_waits_in_the_queue_are_ignored():
    """Lines 2..4 arrive after the flush and ask for line 1 again, whatever their error:
    line 1 has not gone out again, every line from it on will."""
    t = tracker(range(1, 5))  # lines 1..4 in flight, current line 5
    assert t.request(1, 5, [1, 2, 3, 4]) is Verdict.ACCEPTED
    for error in (LINE_NUMBER_ERROR, "checksum mismatch, Last Line: 0", None):
        if error is not None:
            t.note_error(error)
        assert t.request(1, 5, []) is Verdict.IGNORED
        assert t.last_error is None, "each request consumes its error line"
    assert [n for n, _ in drain(t)] == [1, 2, 3, 4]


def test_a_repeat_after_the_line_went_out_again_is_honoured():
    """The flush a late line provoked may have destroyed the copy of line 1: honoured at
    once (on today's code a duplicate budget ignored it, and the print waited for a probe)."""
    t = tracker(range(1, 5))
    t.request(1, 5, [1, 2, 3, 4])
    assert t.take() == (1, "G1 X1")
    t.note_error(LINE_NUMBER_ERROR)
    assert t.request(1, 5, [1]) is Verdict.ACCEPTED
    assert [n for n, _ in drain(t)] == [1, 2, 3, 4]


def test_repeats_count_as_a_loop_only_beyond_the_lines_that_could_still_arrive():
    t = tracker(range(1, 5), max_repeats=2)
    t.request(1, 5, [-1, 1, 2, 3, 4])  # 3 numbered lines behind line 1 (unnumbered: none)
    verdicts = []
    for _ in range(5):
        t.take()
        verdicts.append(t.request(1, 5, [1]))
    assert verdicts == [Verdict.ACCEPTED] * 4 + [Verdict.LOOP]


@pytest.mark.parametrize("max_repeats", [1, 3, 10])
def test_the_same_line_requested_again_and_again_is_a_loop(max_repeats):
    """OctoPrint: the first request starts the count at 0, each repeat adds 1, at >= max -> loop."""
    t = tracker(max_repeats=max_repeats)
    verdicts = []
    for _ in range(max_repeats + 1):
        verdicts.append(t.request(2, 6, []))
        drain(t)  # each time line 2 went out again
    assert verdicts[:-1] == [Verdict.ACCEPTED] * max_repeats
    assert verdicts[-1] is Verdict.LOOP
    assert t.requests == max_repeats + 1


def test_a_different_line_resets_the_repeat_count():
    t = tracker(max_repeats=2)
    verdicts = []
    for n in (2, 2, 3, 2, 2, 2):
        verdicts.append(t.request(n, 6, []))
        drain(t)
    assert verdicts == [Verdict.ACCEPTED] * 5 + [Verdict.LOOP]
