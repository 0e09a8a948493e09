"""The pipeline chain: runs one phase's stages over a command with the seed's return contract.

A stage here is already bound: an id, its phase and an OctoPrint-style callable. For the G-code
phases the callable gets `(comm, phase, cmd, cmd_type, gcode, subcode=, tags=)` and may return
None, a str, a 1-/2-/3-tuple or (queuing only) a list of those. A stage that raises or breaks
the contract is logged with its id, counted, and the command goes on unchanged: a stage never
stops the printer. No IO and no trio here; the caller keeps empty phases off the hot path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from time import perf_counter_ns
from typing import Any

import attrs

from pipeline.gcode import Command
from pipeline.phases import NO_COMM_PHASES, SHORT_NAMES, Phase

log = logging.getLogger("printpipe.pipeline")


@attrs.define(eq=False)
class StageCounters:
    calls: int = 0
    rewrites: int = 0
    suppressions: int = 0
    errors: int = 0
    time_ns: int = 0


@attrs.frozen
class StageStats:
    """A frozen snapshot of one stage's counters (for the HTTP API and `printpipe check`)."""

    id: str
    phase: str
    kind: str
    target: str
    order: int | None
    calls: int
    rewrites: int
    suppressions: int
    errors: int
    time_ms: float


@attrs.define(eq=False)
class BoundStage:
    id: str
    phase: Phase
    handler: Callable[..., Any]
    kind: str = "handler"
    target: str = ""
    order: int | None = None
    counters: StageCounters = attrs.Factory(StageCounters)

    def stats(self) -> StageStats:
        c = self.counters
        return StageStats(self.id, self.phase.value, self.kind, self.target, self.order,
                          c.calls, c.rewrites, c.suppressions, c.errors, c.time_ns / 1e6)


#: Command phases run for every printed line; their stages' time is measured on one run in
#: _SAMPLE and scaled, so a stage's time counter costs an eighth of a clock read per line.
_SAMPLE = 8
_SAMPLE_MASK = _SAMPLE - 1


class ContractError(Exception):
    """A stage returned something its phase's contract does not allow."""


def _entry(ret: Any, cmd: Command) -> Command | None:
    """One result entry -> the new command (None = suppressed). Raises ContractError."""
    line: Any  # what the handler said the command is: checked below
    if isinstance(ret, str):
        line, cmd_type, tags = ret, cmd.cmd_type, None
    elif isinstance(ret, tuple):
        n = len(ret)
        if n == 1:
            line, cmd_type, tags = ret[0], cmd.cmd_type, None
        elif n == 2:
            line, cmd_type, tags = ret[0], ret[1], None
        elif n == 3:
            line, cmd_type, tags = ret
        else:
            raise ContractError(f"returned a {n}-tuple; expected 1, 2 or 3 items")
    else:
        raise ContractError(f"returned {type(ret).__name__}; expected None, str, tuple or list")
    if line is None:
        return None
    if not isinstance(line, str):
        raise ContractError(f"returned command {line!r}, not a str")
    if cmd_type is not None and not isinstance(cmd_type, str):
        raise ContractError(f"returned cmd_type {cmd_type!r}, not a str")
    if tags is not None and not isinstance(tags, (set, frozenset, list, tuple)):
        raise ContractError(f"returned tags {tags!r}, not a set")
    new_tags = cmd.tags if not tags else cmd.tags.union(tags)
    if line == cmd.line:
        if cmd_type == cmd.cmd_type and new_tags is cmd.tags:
            return cmd
        return Command(cmd.line, cmd.gcode, cmd.subcode, cmd_type, new_tags)
    return Command.parse(line, cmd_type=cmd_type, tags=new_tags)


class Pipeline:
    """Every phase's ordered stages, and the code that runs them."""

    def __init__(self, stages: Mapping[Phase, Sequence[BoundStage]], comm: Any = None) -> None:
        self.stages: dict[Phase, tuple[BoundStage, ...]] = {
            p: tuple(s) for p, s in stages.items() if s}
        self.comm = comm
        self._tick = 0
        self.queuing = self.stages.get(Phase.GCODE_QUEUING, ())
        self.queued = self.stages.get(Phase.GCODE_QUEUED, ())
        self.sending = self.stages.get(Phase.GCODE_SENDING, ())
        self.sent = self.stages.get(Phase.GCODE_SENT, ())
        self.received = self.stages.get(Phase.GCODE_RECEIVED, ())

    def for_phase(self, phase: Phase) -> tuple[BoundStage, ...]:
        return self.stages.get(phase, ())

    def statistics(self) -> list[StageStats]:
        return [st.stats() for stages in self.stages.values() for st in stages]

    def run(self, phase: Phase, cmd: Command) -> list[Command]:
        """A rewriting command phase (queuing, sending) over `cmd`, through all its stages."""
        return self.run_command_phase(phase, self.stages[phase], cmd)

    def notify(self, phase: Phase, cmd: Command) -> None:
        """An observing command phase (queued, sent) over `cmd`, through all its stages."""
        self.notify_phase(phase, self.stages[phase], cmd)

    def run_command_phase(self, phase: Phase, stages: Sequence[BoundStage],
                          cmd: Command) -> list[Command]:
        """Run a rewriting phase (queuing, sending) over one command.

        Returns the resulting commands: [] when suppressed, several only in queuing.
        """
        short = SHORT_NAMES[phase]
        comm = self.comm
        self._tick += 1
        timed = not self._tick & _SAMPLE_MASK
        t0 = perf_counter_ns() if timed else 0
        line, gcode, subcode, cmd_type, tags = cmd  # once: NamedTuple fields are properties
        for i, st in enumerate(stages):
            c = st.counters
            c.calls += 1
            try:
                ret = st.handler(comm, short, line, cmd_type, gcode, subcode=subcode, tags=tags)
                results = None if ret is None else self._results(ret, cmd, st, phase)
            except Exception as exc:  # noqa: BLE001 (a stage never stops the printer)
                c.errors += 1
                self._report(st, exc, cmd)
                results = None  # the command stays as it was before this stage
            if timed:
                t1 = perf_counter_ns()
                c.time_ns += (t1 - t0) * _SAMPLE
                t0 = t1
            if results is None:
                continue  # the hot path: the stage did not touch the command
            if not results:
                c.suppressions += 1
                return results
            if len(results) > 1:
                return self._run_list(phase, stages[i + 1:], results)
            cmd = results[0]
            line, gcode, subcode, cmd_type, tags = cmd
        return [cmd]

    def _results(self, ret: Any, cmd: Command, st: BoundStage, phase: Phase) -> list[Command]:
        """Normalise one handler's return value into the commands it stands for."""
        if isinstance(ret, list):
            if phase is not Phase.GCODE_QUEUING:
                raise ContractError("returned a list outside the queuing phase")
            entries = [_entry(r, cmd) for r in ret]
        else:
            entries = [_entry(ret, cmd)]
        out = []
        for r in entries:
            if r is None:
                continue
            if r is not cmd and r.line != cmd.line:
                r = r.with_tags("source:rewrite", f"phase:{SHORT_NAMES[phase]}", f"plugin:{st.id}")
                st.counters.rewrites += 1
            out.append(r)
        return out

    def _run_list(self, phase: Phase, stages: Sequence[BoundStage],
                  work: list[Command]) -> list[Command]:
        """After an expansion: every later stage sees every command of the working list."""
        for st in stages:
            out: list[Command] = []
            for item in work:
                out.extend(self.run_command_phase(phase, (st,), item))
            if not out:
                return out
            work = out
        return work

    def notify_phase(self, phase: Phase, stages: Sequence[BoundStage], cmd: Command) -> None:
        """Run an observing phase (queued, sent): return values are ignored."""
        short = SHORT_NAMES[phase]
        comm = self.comm
        self._tick += 1
        timed = not self._tick & _SAMPLE_MASK
        t0 = perf_counter_ns() if timed else 0
        line, gcode, subcode, cmd_type, tags = cmd
        for st in stages:
            c = st.counters
            c.calls += 1
            try:
                st.handler(comm, short, line, cmd_type, gcode, subcode=subcode, tags=tags)
            except Exception as exc:  # noqa: BLE001 (a stage never stops the printer)
                c.errors += 1
                self._report(st, exc, cmd)
            if timed:
                t1 = perf_counter_ns()
                c.time_ns += (t1 - t0) * _SAMPLE
                t0 = t1

    def call(self, phase: Phase, *args: Any, **kwargs: Any) -> list[tuple[BoundStage, Any]]:
        """Call every stage of a non-command phase with the seed's arguments (the comm
        facade first, except for the hooks the seed calls without it).

        Returns (stage, result) for the stages that did not raise.
        """
        results = []
        lead = () if phase in NO_COMM_PHASES else (self.comm,)
        for st in self.stages.get(phase, ()):
            c = st.counters
            c.calls += 1
            t0 = perf_counter_ns()
            try:
                results.append((st, st.handler(*lead, *args, **kwargs)))
            except Exception as exc:  # noqa: BLE001 (a stage never stops the printer)
                c.errors += 1
                self._report(st, exc, None)
            c.time_ns += perf_counter_ns() - t0
        return results

    def filter_received(self, line: str) -> str | None:
        """The received phase: each stage may rewrite the line; None ends processing."""
        for st in self.received:
            c = st.counters
            c.calls += 1
            try:
                new = st.handler(self.comm, line)
            except Exception as exc:  # noqa: BLE001 (a stage never stops the printer)
                c.errors += 1
                self._report(st, exc, None)
                continue
            if new is None:
                c.suppressions += 1
                return None
            if not isinstance(new, str):
                c.errors += 1
                self._report(st, ContractError(f"returned {type(new).__name__}, not a str"),
                             None)
                continue
            if new != line:
                c.rewrites += 1
                line = new
        return line

    @staticmethod
    def _report(st: BoundStage, exc: BaseException, cmd: Command | None) -> None:
        what = f" on {cmd.line!r}" if cmd is not None else ""
        if isinstance(exc, ContractError):
            log.error("stage %r in %s broke the phase contract%s: %s; command kept unchanged",
                      st.id, st.phase.value, what, exc)
        else:
            log.error("stage %r in %s raised%s; skipped", st.id, st.phase.value, what,
                      exc_info=exc)
