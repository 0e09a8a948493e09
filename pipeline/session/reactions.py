"""How the session reacts to what the protocol engine reports: state changes, the connect
sequence, temperatures, positions, firmware info and capabilities, action commands, firmware
errors, busy detection, timeouts, printer resets, invalid tools and link failures.

One method per engine event, chosen through an explicit table (`dispatch`). It works through
the parts it is handed (states, queues, jobs, tracker, scripts, pipeline) and the
`EngineControl` view of the engine, never through the session object. Pure: no IO, no trio.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from pipeline.config.schema import PrinterSpec, SerialSpec
from pipeline.events.names import Event
from pipeline.hooks.chain import Pipeline
from pipeline.phases import Phase
from pipeline.protocol import events as ee
from pipeline.protocol import replies
from pipeline.protocol.events import EngineEvent, ErrorReason, LinkState
from pipeline.session.jobs import JobControl
from pipeline.session.queues import CommandQueues, CommandSink, Publish
from pipeline.session.script_runner import ScriptRunner
from pipeline.session.sd.card import SdCard
from pipeline.session.states import PrinterState, PrinterStates
from pipeline.session.tracking import Tracker

log = logging.getLogger("printpipe.host")


class EngineControl(Protocol):
    """What the reactions read of the engine, and the one thing they ask of it."""

    @property
    def capabilities(self) -> Mapping[str, bool]: ...

    def fail(self, reason: ErrorReason, message: str) -> Sequence[EngineEvent]: ...


class EngineReactions:
    def __init__(self, *, printer: PrinterSpec, serial: SerialSpec, states: PrinterStates,
                 sink: CommandSink,
                 queues: CommandQueues, fire: Publish, jobs: JobControl, tracker: Tracker,
                 scripts: ScriptRunner, pipeline: Pipeline, engine: EngineControl,
                 on_line: Callable[[str], None], sd: SdCard) -> None:
        self._printer = printer
        self._serial = serial
        self._states = states
        self._sink = sink
        self._queues = queues
        self._fire = fire
        self._jobs = jobs
        self._tracker = tracker
        self._scripts = scripts
        self._pipeline = pipeline
        self._engine = engine
        self._on_line = on_line
        self._sd = sd
        self.dispatch: dict[type, Callable[[Any], None]] = {
            ee.Connected: self._on_connected,
            ee.Received: self._on_received,
            ee.Temperatures: self._on_temperatures,
            ee.PositionReport: self._on_position,
            ee.FirmwareInfo: self._on_firmware_info,
            ee.CapabilityReported: self._on_capability,
            ee.CapabilityReport: self._on_capability_report,
            ee.ActionCommand: self._on_action,
            ee.FirmwareErrorLine: self._on_firmware_error,
            ee.BusyDetected: self._on_busy,
            ee.TickleRequested: self._on_tickle,
            ee.PrinterReset: self._on_reset,
            ee.InvalidTool: self._on_invalid_tool,
            ee.LinkFailed: self._on_link_failed,
            ee.StateChanged: self._on_link_state,
        }

    def handle(self, events: Iterable[EngineEvent]) -> None:
        dispatch = self.dispatch
        for ev in events:
            dispatch[type(ev)](ev)

    def _enqueue(self, line: str, trigger: str, cmd_type: str | None = None) -> None:
        self._sink.enqueue(line, cmd_type=cmd_type, tags=frozenset({f"trigger:{trigger}"}))

    def _on_link_state(self, ev: ee.StateChanged) -> None:
        if ev.new is LinkState.OPERATIONAL:
            self._states.to(PrinterState.OPERATIONAL)
        elif ev.new is LinkState.ERROR:
            self._states.to(PrinterState.ERROR)

    def _on_connected(self, ev: ee.Connected) -> None:
        spec = self._printer
        self._fire(Event.CONNECTED, {"port": spec.port, "baudrate": spec.baudrate})
        self._enqueue("M110 N0", "comm.on_connected")
        self._enqueue("M115", "comm.on_connected")
        self._scripts.run("afterPrinterConnected",
                          {"event": {"port": spec.port, "baudrate": spec.baudrate}})

    def _on_received(self, ev: ee.Received) -> None:
        self._sd.on_line(ev.line)
        self._on_line(ev.line)

    def _on_temperatures(self, ev: ee.Temperatures) -> None:
        temps: dict[str, Any] = self._tracker.canonical(ev.temps)
        if self._pipeline.for_phase(Phase.TEMPERATURES_RECEIVED):
            for _, result in self._pipeline.call(Phase.TEMPERATURES_RECEIVED, temps):
                if not result:
                    return
                temps = dict(result)
        self._tracker.update_temperatures(temps)

    def _on_position(self, ev: ee.PositionReport) -> None:
        payload = self._tracker.update_position(ev.position)
        self._fire(Event.POSITION_UPDATE, payload)
        self._jobs.on_position(payload)

    def _on_firmware_info(self, ev: ee.FirmwareInfo) -> None:
        self._pipeline.call(Phase.FIRMWARE_INFO, ev.name, dict(ev.data))
        self._fire(Event.FIRMWARE_DATA, {"name": ev.name, "data": dict(ev.data)})
        self._sd.on_firmware(ev.name)

    def _on_capability(self, ev: ee.CapabilityReported) -> None:
        self._pipeline.call(Phase.FIRMWARE_CAPABILITIES, ev.name, ev.enabled, dict(ev.all))

    def _on_capability_report(self, ev: ee.CapabilityReport) -> None:
        self._pipeline.call(Phase.FIRMWARE_CAPABILITY_REPORT, dict(ev.all))
        interval = self._serial.timeouts.temperature_autoreport
        if ev.all.get("AUTOREPORT_TEMP") and interval > 0:
            self._enqueue(f"M155 S{interval}", "comm.set_autoreport_temperature_interval")
        # the heaters at once: Marlin's first autoreport (and the first poll) is an interval
        # away, and clients show no heater until one was reported
        self._enqueue("M105", "comm.on_connected", cmd_type="temperature_poll")
        self._sd.on_capabilities(ev.all)

    def _on_action(self, ev: ee.ActionCommand) -> None:
        self._jobs.action(ev.name)
        action = f"{ev.name} {ev.params}" if ev.params else ev.name  # the seed: incl. params
        self._pipeline.call(Phase.ACTION, ev.line, action, name=ev.name, params=ev.params)

    def _on_firmware_error(self, ev: ee.FirmwareErrorLine) -> None:
        for _, handled in self._pipeline.call(Phase.GCODE_ERROR, ev.text):
            if handled:
                return
        mode = self._serial.error_handling.value
        if ev.fatal or mode == "disconnect":
            self._states.fail(ev.text)
            self.handle(self._engine.fail(ErrorReason.FIRMWARE, ev.text))
        elif (mode == "cancel" and self._jobs.active
              and self._states.state is not PrinterState.CANCELLING):
            log.warning("printer reported an error, cancelling the print: %s", ev.text)
            self._jobs.cancel(firmware_error=ev.text)
        else:
            log.warning("printer reported an error, %s: %s", mode, ev.text)

    def _on_busy(self, ev: ee.BusyDetected) -> None:
        interval = max(int(self._serial.timeouts.communication_busy) - 1, 1)
        self._enqueue(f"M113 S{interval}", "comm.set_busy_protocol_interval")

    def _on_tickle(self, ev: ee.TickleRequested) -> None:
        self._enqueue("M105", "comm.handle_timeout", cmd_type="temperature")

    def _on_reset(self, ev: ee.PrinterReset) -> None:
        """The printer rebooted: a running job has lost its state and fails (its position is
        kept); the link stays up and is re-synchronised, autoreport re-armed."""
        self._fire(Event.PRINTER_RESET, {"idle": ev.idle})
        self._queues.clear()
        jobs = self._jobs
        if jobs.job is not None and jobs.result is None:
            jobs.fail("Aborting job since the printer reset itself and lost its state")
        self._states.to(PrinterState.OPERATIONAL)
        self._tracker.autoreport = False
        self._enqueue("M110 N0", "comm.on_external_reset")
        interval = self._serial.timeouts.temperature_autoreport
        if self._engine.capabilities.get("AUTOREPORT_TEMP") and interval > 0:
            self._enqueue(f"M155 S{interval}", "comm.on_external_reset")
        self._sd.on_capabilities(self._engine.capabilities)  # the card is unmounted now

    def _on_invalid_tool(self, ev: ee.InvalidTool) -> None:
        tool, fallback = self._tracker.invalid_tool(ev.tool)
        self._fire(Event.INVALID_TOOL_REPORTED, {"tool": tool, "fallback": fallback})
        if fallback is not None:
            self._enqueue(f"T{fallback}", "revert_invalid_tool")

    def _on_link_failed(self, ev: ee.LinkFailed) -> None:
        self._states.fail(ev.message)
        self._jobs.fail(self._states.error or ev.message)
        self._states.to(PrinterState.ERROR)
        payload = {"error": ev.message, "reason": ev.reason.value}
        faq = replies.faq_tag(ev.message)
        if faq:
            payload["faq"] = faq  # OctoPrint's FAQ tag: firmware-mintemp, -thermal-runaway, ...
        self._fire(Event.ERROR, payload)
