"""The printer states' transition table: every change the session makes is in it, anything
else is refused with a clear error and changes nothing, and each change is published once."""

from __future__ import annotations

import pytest
from pairs import pair, start

from pipeline.session.states import (
    JOB_STATES,
    TRANSITIONS,
    IllegalTransition,
    PrinterState,
    PrinterStates,
)

S = PrinterState
LEGAL = sorted(((old, new) for old, news in TRANSITIONS.items() for new in news),
               key=lambda p: (p[0].name, p[1].name))
ILLEGAL = [(S.OFFLINE, S.PRINTING), (S.OPERATIONAL, S.PRINTING), (S.OPERATIONAL, S.PAUSED),
           (S.CANCELLING, S.PRINTING), (S.FINISHING, S.PAUSED), (S.ERROR, S.OPERATIONAL),
           (S.CLOSED_WITH_ERROR, S.PRINTING), (S.CONNECTING, S.STARTING)]


def states_at(state: PrinterState) -> tuple[PrinterStates, list[PrinterState]]:
    seen: list[PrinterState] = []
    states = PrinterStates(seen.append)
    states.state = state  # the start of the row under test
    return states, seen


@pytest.mark.parametrize(("old", "new"), LEGAL, ids=lambda s: s.name)
def test_every_listed_change_is_made_and_published_once(old, new):
    states, seen = states_at(old)
    states.to(new)
    assert states.state is new and seen == [new]


@pytest.mark.parametrize(("old", "new"), ILLEGAL, ids=lambda s: s.name)
def test_a_change_the_table_does_not_list_is_refused_and_changes_nothing(old, new):
    states, seen = states_at(old)
    with pytest.raises(IllegalTransition, match=f"cannot go from {old.value} to {new.value}"):
        states.to(new)
    assert states.state is old and seen == []


def test_staying_in_a_state_is_no_change():
    states, seen = states_at(S.PRINTING)
    states.to(S.PRINTING)
    assert seen == []


def test_the_table_covers_every_state_and_every_state_can_be_reached():
    assert set(TRANSITIONS) == set(S)
    assert all(state not in TRANSITIONS[state] for state in S)  # staying is no change
    reached, todo = {S.OFFLINE}, [S.OFFLINE]
    while todo:
        for new in TRANSITIONS[todo.pop()] - reached:
            reached.add(new)
            todo.append(new)
    assert reached == set(S)


def test_from_every_job_state_the_link_can_fail_or_close():
    for state in JOB_STATES:
        assert {S.ERROR, S.OFFLINE, S.CLOSED_WITH_ERROR} <= TRANSITIONS[state]


def test_the_first_error_is_kept():
    states, _ = states_at(S.OPERATIONAL)
    states.fail("thermal runaway")
    states.fail("the port closed")
    assert states.error == "thermal runaway"


def test_a_whole_print_with_pause_and_resume_follows_the_table():
    p = pair("serial:\n  timeouts:\n    communication: 1.0\n")
    changes: list[str] = []
    p.core.listeners.append(lambda e, pl: changes.append(pl["state_id"])
                            if str(e) == "PrinterStateChanged" else None)
    start(p, "G1 X1\n" * 50)
    p.run_until(lambda: p.core.state is S.PRINTING)
    p.core.jobs.pause()
    p.run_until(lambda: p.core.state is S.PAUSED)
    p.core.jobs.resume()
    p.run_until(lambda: p.core.jobs.result is not None and p.core.state is S.OPERATIONAL)
    assert changes == ["STARTING", "PRINTING", "PAUSING", "PAUSED", "RESUMING", "PRINTING",
                       "FINISHING", "OPERATIONAL"]
