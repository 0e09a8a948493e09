"""An SD print as job control sees it: a FileJob whose lines the printer reads itself (the
session pulls none: `streams` is False), whose position comes from the printer's `SD
printing byte X/Y`, and which has the printer commands for each moment of a job: M26 S0 and
M24 to start, M25 to pause, M24 to resume, M25 + M26 S0 (+ M524 where the firmware has it)
to cancel. Pure.
"""

from __future__ import annotations

from pipeline.session.filejob import FileJob, JobFile


class SdJob(FileJob):
    streams = False

    def __init__(self, file: JobFile, *, abort: bool) -> None:
        super().__init__(file)
        self.eof = True
        self._commands = {"start": ("M26 S0", "M24"), "pause": ("M25",), "resume": ("M24",),
                          "cancel": ("M25", "M26 S0", *(("M524",) if abort else ()))}

    def device_commands(self, moment: str) -> tuple[str, ...]:
        return self._commands.get(moment, ())

    def at_byte(self, pos: int, size: int) -> None:
        """The printer's `SD printing byte pos/size`."""
        self.pos = pos
        if size and size != self.file.size:
            self.file = JobFile(self.file.name, self.file.path, size, self.file.origin,
                                self.file.user)
