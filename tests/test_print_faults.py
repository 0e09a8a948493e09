"""Faults and timeouts on the in-memory Pair with its manual clock (no pty, no real waiting):
a 20,000-line print stays exactly-once and in order under every injected fault, and a lost ok
is recovered by the communication timeout rule exactly when its period has run out, never
earlier, with nothing sent twice. The real-pty files keep short runs of the same kind to
prove the trio link and its watchdog."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
from pairs import pair, start
from sample_prints import file_lines

from pipeline.config.schema import FaultSpec
from pipeline.session.jobs import Outcome
from pipeline.session.states import PrinterState as S
from pipeline.virtual.pair import Pair, expected_commands, sample_gcode


class Stalls:
    """Runs a Pair and records every stall: a stretch of manual-clock time in which the host
    wrote nothing and the firmware accepted nothing, as (start, length, the commands the
    firmware accepted when it ended)."""

    def __init__(self, p: Pair) -> None:
        self.p = p
        self.found: list[tuple[float, float, list[str]]] = []
        self._mark = (len(p.wire), len(p.fw.accepted))
        self._since = p.clock.now
        self._timeouts = p.core.statistics().timeouts

    @property
    def timeouts(self) -> int:
        """Communication timeouts the host handled while this ran."""
        return self.p.core.statistics().timeouts - self._timeouts

    def run_until(self, predicate: Callable[[], bool]) -> None:
        p = self.p

        def watch() -> bool:
            mark = (len(p.wire), len(p.fw.accepted))
            if mark != self._mark:
                now = p.clock.now
                if now > self._since:
                    self.found.append((self._since, now - self._since,
                                       p.fw.accepted[self._mark[1]:]))
                self._mark, self._since = mark, now
            return predicate()

        p.run_until(watch)

    def lengths(self) -> Counter[float]:
        return Counter(round(length, 6) for _, length, _ in self.found)


def print_exactly_once(p: Pair, lines: int) -> Stalls:
    """Print `lines` lines of sample G-code on `p` and check the job is DONE with every file
    command accepted exactly once, in order. Returns the stalls on the way."""
    text = sample_gcode(lines, seed=1)
    expected = expected_commands(text)
    stalls = Stalls(p)
    start(p, text)
    stalls.run_until(lambda: p.core.jobs.result is not None and not p.core.jobs.active)
    assert p.core.jobs.result.outcome is Outcome.DONE
    assert file_lines(p.fw.accepted, expected) == expected  # each exactly once, in order
    return stalls


# Distinct periods, so each stall shows which rule ended it: the lost-ok probe (0.05 s, the
# shortest ok deadline: the plain model answers at once), the busy period once busy lines came
# (4 s), the resend-without-ok detection (0.25 s).
# (No temperature reports: a report ends a resend-without-ok wait early, by its own rule.)
TIMEOUTS = """serial:
  timeouts:
    communication: 20
    communication_busy: 4
    resend_ok: 0.25
    temperature: 1000
    temperature_autoreport: 0
"""
PROBE, BUSY, RESEND_OK = 0.05, 4.0, 0.25

FAULT_MIXES = {
    "corrupt-lost_ok-busy": FaultSpec(seed=4, corrupt_rate=0.01, lost_ok_rate=0.001,
                                      busy_rate=0.01),
    "plus-resend_without_ok-noise": FaultSpec(seed=4, corrupt_rate=0.01, resend_without_ok=True,
                                              lost_ok_rate=0.001, busy_rate=0.01,
                                              error_rate=0.01),
}


@pytest.mark.parametrize("faults", FAULT_MIXES.values(), ids=FAULT_MIXES.keys())
def test_20000_lines_exact_under_faults(faults):
    p = pair(TIMEOUTS, faults=faults)
    stalls = print_exactly_once(p, 20000)
    assert p.core.state is S.OPERATIONAL and not p.core.failed
    resends = p.core.statistics().resends
    assert resends > 50  # the faults really happened
    # The host waited only where a rule says so: each lost ok cost one probe deadline (the
    # busy period when busy lines had just come), each resend without its ok at most one
    # resend_ok detection; a firmware that sends its oks never makes it wait for those.
    lengths = stalls.lengths()
    assert set(lengths) <= {PROBE, BUSY, RESEND_OK}
    assert lengths[PROBE] + lengths[BUSY] == stalls.timeouts >= 10
    assert p.core.engine.deadlines.probes_total == stalls.timeouts
    if faults.resend_without_ok:
        assert 0 < lengths[RESEND_OK] <= resends
    else:
        assert lengths[RESEND_OK] == 0


LINES = [f"G1 X{i}" for i in range(300)]


@pytest.mark.parametrize("yaml", [
    "",
    "serial:\n  timeouts:\n    communication: 7\n",
    "serial:\n  timeouts:\n    communication: 1\n    temperature_autoreport: 0\n",
], ids=["default", "communication-7s", "no-autoreport"])
def test_lost_ok_is_recovered_by_a_probe(yaml):
    """Each lost ok stalls the link for the shortest ok deadline (0.05 s: the printer answers
    at once), whatever the communication timeout; then one numbered M105 goes out, the
    printer answers it, and that answer acknowledges the line whose ok was lost too."""
    p = pair(yaml, faults=FaultSpec(seed=2, lost_ok_rate=0.02))
    stalls = Stalls(p)
    for line in LINES:
        p.core.enqueue(line)
    stalls.run_until(lambda: p.core.idle)
    assert [a for a in p.fw.accepted if a.startswith("G1 ")] == LINES  # none lost, none twice
    assert p.core.operational and p.core.engine.in_flight == 0
    assert len(stalls.found) == stalls.timeouts == p.core.engine.deadlines.probes_total >= 3
    for _, length, accepted in stalls.found:
        assert length == pytest.approx(PROBE)
        assert accepted[0] == "M105"  # the probe, never a line again


def test_lost_ok_while_printing_is_recovered_with_a_probe():
    p = pair("serial:\n  timeouts:\n    communication: 7\n",
             faults=FaultSpec(seed=2, lost_ok_rate=0.02))
    stalls = print_exactly_once(p, 300)
    assert len(stalls.found) == stalls.timeouts >= 3
    for _, length, accepted in stalls.found:
        assert length == pytest.approx(PROBE)
        assert accepted[0] == "M105"
