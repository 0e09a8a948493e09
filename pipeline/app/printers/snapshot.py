"""How one printer's control answers its state: the status snapshot (state, heaters, job,
selection, what stages add), the job shown, the row of the farm view (`GET /api/printers`) and
what subscriptions' placeholders read. Functions of the parts they read: no state here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.app.printers.status import JobStatus, Selection, Status
from pipeline.config.reader import HostConfig
from pipeline.events.placeholders import FiringContext
from pipeline.fanout.subscriptions import now_iso
from pipeline.hooks.host_phases import additional_state_data
from pipeline.session.core import HostCore
from pipeline.session.jobs import Outcome
from pipeline.session.states import PrinterState


def status(config: HostConfig, core: HostCore | None, *, error: str | None,
           offsets: Mapping[str, float], selected: Selection | None,
           job_selection: Selection | None, waiting: str | None) -> Status:
    profile = config.printer.profile
    known = [f"tool{n}" for n in range(profile.extruders)]
    known += ["bed"] * profile.heated_bed + ["chamber"] * profile.heated_chamber
    temps: dict[str, dict[str, float | None]] = {}
    if core is not None:  # a heater is shown once the printer reported it (OctoPrint's way)
        temps = {name: t for name, t in core.tracker.temperature_payload().items()
                 if t["actual"] is not None and name in known}
    temps = {name: {**t, "offset": offsets.get(name, 0)} for name, t in temps.items()}
    if core is None:
        state = PrinterState.CLOSED_WITH_ERROR if error else PrinterState.OFFLINE
        return Status(state, False, error, temps, None, selected, {}, waiting)
    return Status(core.state, True, core.error or error, temps,
                  job_status(core, selected, job_selection), selected,
                  additional_state_data(core.pipeline))


def job_status(core: HostCore, selected: Selection | None,
               job_selection: Selection | None) -> JobStatus | None:
    """The running job, or the ended one while its file is still the selection."""
    jobs = core.jobs
    job, result = jobs.job, jobs.result
    if job is None or (not jobs.active and selected is not job_selection):
        return None
    if result is None:
        return JobStatus(job.file, job.progress, job.pos, job.line_no, jobs.elapsed(),
                         jobs.time_left(), jobs.active)
    done = result.outcome is Outcome.DONE  # its times stop with it
    return JobStatus(job.file, 1.0 if done else job.progress, job.pos, job.line_no,
                     result.time, 0.0 if done else None, jobs.active, result)


def firing_context(core: HostCore | None, selected: Selection | None) -> FiringContext:
    """What the generic placeholders of subscriptions read."""
    job = core.jobs.job if core else None
    sel = selected
    return FiringContext(
        current_z=core.tracker.z if core else None,
        filename=sel.name if sel else None, filepath=sel.path if sel else None,
        origin=sel.origin if sel else None,
        progress=job.progress * 100 if job is not None else None, now=now_iso())


def farm_row(name: str, st: Status) -> dict[str, Any]:
    """One printer as `GET /api/printers` lists it: state, job file, progress, heaters."""
    job = st.job
    return {"name": name, "state": st.state.value, "connected": st.connected,
            "error": st.error, "waiting": st.waiting,
            "file": (job.file.path if job is not None
                     else st.selected.path if st.selected is not None else None),
            "progress": None if job is None else round(job.progress * 100, 2),
            "printing": bool(job is not None and job.active),
            "temperatures": {h: {"actual": t.get("actual"), "target": t.get("target")}
                             for h, t in st.temperatures.items()}}
