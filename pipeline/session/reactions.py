"""How the host reacts to what the protocol engine reports: state changes, the connect
sequence, temperatures, positions, firmware info and capabilities, action commands, firmware
errors, busy detection, timeouts, printer resets, invalid tools and link failures.

One method per engine event, chosen through an explicit table (`dispatch`). Pure: no IO, no
trio; everything goes through the HostCore it is given.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

from pipeline.protocol import events as ee
from pipeline.protocol import replies
from pipeline.protocol.events import ErrorReason, LinkState
from pipeline.events.names import Event
from pipeline.phases import Phase
from pipeline.session.states import PrinterState

if TYPE_CHECKING:
    from pipeline.session.core import HostCore

log = logging.getLogger("printpipe.host")


class EngineReactions:
    def __init__(self, host: HostCore) -> None:
        self.host = host
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

    def _on_link_state(self, ev: ee.StateChanged) -> None:
        h = self.host
        if ev.new is LinkState.OPERATIONAL:
            h.set_state(PrinterState.OPERATIONAL)
        elif ev.new is LinkState.ERROR:
            h.set_state(PrinterState.ERROR)

    def _on_connected(self, ev: ee.Connected) -> None:
        h = self.host
        spec = h.config.printer
        h.fire(Event.CONNECTED, {"port": spec.port, "baudrate": spec.baudrate})
        tags = frozenset({"trigger:comm.on_connected"})
        h.enqueue("M110 N0", tags=tags)
        h.enqueue("M115", tags=tags)
        h.scripts.run("afterPrinterConnected",
                         {"event": {"port": spec.port, "baudrate": spec.baudrate}})

    def _on_received(self, ev: ee.Received) -> None:
        h = self.host
        for listener in h.line_listeners:
            listener(ev.line)

    def _on_temperatures(self, ev: ee.Temperatures) -> None:
        h = self.host
        temps: dict[str, Any] = dict(ev.temps)
        stages = h.pipeline.for_phase(Phase.TEMPERATURES_RECEIVED)
        for _, result in h.pipeline.call(Phase.TEMPERATURES_RECEIVED, temps) if stages else ():
            if not result:
                return
            temps = dict(result)
        h.tracker.update_temperatures(temps, h.engine.current_tool)

    def _on_position(self, ev: ee.PositionReport) -> None:
        h = self.host
        payload = h.tracker.update_position(ev.position)
        h.fire(Event.POSITION_UPDATE, payload)
        h.jobs.on_position(payload)

    def _on_firmware_info(self, ev: ee.FirmwareInfo) -> None:
        h = self.host
        h.pipeline.call(Phase.FIRMWARE_INFO, ev.name, dict(ev.data))
        h.fire(Event.FIRMWARE_DATA, {"name": ev.name, "data": dict(ev.data)})

    def _on_capability(self, ev: ee.CapabilityReported) -> None:
        h = self.host
        h.pipeline.call(Phase.FIRMWARE_CAPABILITIES, ev.name, ev.enabled, dict(ev.all))

    def _on_capability_report(self, ev: ee.CapabilityReport) -> None:
        h = self.host
        h.pipeline.call(Phase.FIRMWARE_CAPABILITY_REPORT, dict(ev.all))
        interval = h.config.serial.timeouts.temperature_autoreport
        if ev.all.get("AUTOREPORT_TEMP") and interval > 0:
            h.enqueue(f"M155 S{interval}",
                         tags=frozenset({"trigger:comm.set_autoreport_temperature_interval"}))

    def _on_action(self, ev: ee.ActionCommand) -> None:
        h = self.host
        h.jobs.action(ev.name)
        action = f"{ev.name} {ev.params}" if ev.params else ev.name  # the seed: incl. params
        h.pipeline.call(Phase.ACTION, ev.line, action, name=ev.name, params=ev.params)

    def _on_firmware_error(self, ev: ee.FirmwareErrorLine) -> None:
        h = self.host
        for _, handled in h.pipeline.call(Phase.GCODE_ERROR, ev.text):
            if handled:
                return
        mode = h.config.serial.error_handling.value
        if ev.fatal or mode == "disconnect":
            h.error = ev.text
            h.handle_events(h.engine.fail(ErrorReason.FIRMWARE, ev.text))
        elif mode == "cancel" and h.jobs.active and h.state is not PrinterState.CANCELLING:
            log.warning("printer reported an error, cancelling the print: %s", ev.text)
            h.jobs.cancel(firmware_error=ev.text)
        else:
            log.warning("printer reported an error, %s: %s", mode, ev.text)

    def _on_busy(self, ev: ee.BusyDetected) -> None:
        h = self.host
        interval = max(int(h.config.serial.timeouts.communication_busy) - 1, 1)
        h.enqueue(f"M113 S{interval}",
                     tags=frozenset({"trigger:comm.set_busy_protocol_interval"}))

    def _on_tickle(self, ev: ee.TickleRequested) -> None:
        h = self.host
        h.enqueue("M105", cmd_type="temperature",
                     tags=frozenset({"trigger:comm.handle_timeout"}))

    def _on_reset(self, ev: ee.PrinterReset) -> None:
        """The printer rebooted: a running job has lost its state and fails (its position is
        kept); the link stays up and is re-synchronised, autoreport re-armed."""
        h = self.host
        h.fire(Event.PRINTER_RESET, {"idle": ev.idle})
        h.clear_queues()
        if h.jobs.job is not None and h.jobs.result is None:
            h.jobs.fail("Aborting job since the printer reset itself and lost its state")
        h.set_state(PrinterState.OPERATIONAL)
        h.autoreport_temperature = False
        tags = frozenset({"trigger:comm.on_external_reset"})
        h.enqueue("M110 N0", tags=tags)
        interval = h.config.serial.timeouts.temperature_autoreport
        if h.engine.capabilities.get("AUTOREPORT_TEMP") and interval > 0:
            h.enqueue(f"M155 S{interval}", tags=tags)

    def _on_invalid_tool(self, ev: ee.InvalidTool) -> None:
        h = self.host
        fallback = h.tracker.invalid_tool(ev.tool)
        h.fire(Event.INVALID_TOOL_REPORTED, {"tool": ev.tool, "fallback": fallback})
        if fallback is not None:
            h.enqueue(f"T{fallback}", tags=frozenset({"trigger:revert_invalid_tool"}))

    def _on_link_failed(self, ev: ee.LinkFailed) -> None:
        h = self.host
        h.error = h.error or ev.message
        h.jobs.fail(h.error)
        h.set_state(PrinterState.ERROR)
        payload = {"error": ev.message, "reason": ev.reason.value}
        faq = replies.faq_tag(ev.message)
        if faq:
            payload["faq"] = faq  # OctoPrint's FAQ tag: firmware-mintemp, -thermal-runaway, ...
        h.fire(Event.ERROR, payload)
