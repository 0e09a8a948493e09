"""A crash journal is checked before anything of it is shown or sent (pipeline/files/
journalcheck.py, driven by pipeline/app/recovery.py): one row per hostile journal, each
refused at load in one log line naming the field and the problem, set aside (one whose file
lies outside the storage folder is kept for `printpipe recover FILE`), never offered as
PrintInterrupted; a journal that turns hostile after it was offered is refused at resume."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from pipeline.app.printers.recovery import Recovery
from pipeline.config.schema import ProfileSpec
from pipeline.session.jobs import JobStateError
from pipeline.session.recovery import FileIdentity, Journal

TEXT = "G28\nG1 Z0.3 F1200\n" + "".join(f"G1 X{i} Y{i} E{i}\n" for i in range(1, 30))
LINE = 10  # the journal's last acknowledged line


@attrs.define
class Bench:
    storage: str
    elsewhere: str
    job: str
    state: str

    def journal(self) -> dict[str, Any]:
        st = os.stat(self.job)
        filepos = len("".join(TEXT.splitlines(True)[:LINE]))
        state = {"x": 8.0, "y": 8.0, "z": 0.3, "e": 8.0, "f": 1200.0, "relative_axes": False,
                 "relative_e": False, "fan": 0, "tool": 0, "hotends": {0: 200.0}, "bed": 60.0}
        return Journal(FileIdentity(self.job, "job.gcode", "job.gcode", st.st_size,
                                    st.st_mtime_ns), filepos, LINE, state, 1.8e9).to_json()

    def recovery(self, published: list[Any]) -> Recovery:
        return Recovery(self.state, lambda e, p: published.append((e, p)),
                        lambda: (self.storage, ProfileSpec()))


@pytest.fixture
def bench(tmp_path) -> Bench:
    storage, elsewhere, state = (tmp_path / "files", tmp_path / "elsewhere", tmp_path / "state")
    for d in (storage, elsewhere, state):
        d.mkdir()
    (storage / "job.gcode").write_text(TEXT)
    (elsewhere / "job.gcode").write_text(TEXT)
    return Bench(str(storage), str(elsewhere), str(storage / "job.gcode"), str(state))


def disk(path: Callable[[Bench], str]) -> Callable[[dict[str, Any], Bench], None]:
    """A change that points the journal at `path(bench)`, a copy of the job's file."""
    def change(d: dict[str, Any], b: Bench) -> None:
        d["file"]["disk"] = path(b)
    return change


def symlink_out(b: Bench) -> str:
    link = os.path.join(b.storage, "link.gcode")
    os.symlink(os.path.join(b.elsewhere, "job.gcode"), link)
    return link


def state(**values: Any) -> Callable[[dict[str, Any], Bench], None]:
    return lambda d, b: d["state"].update(values)


def top(**values: Any) -> Callable[[dict[str, Any], Bench], None]:
    return lambda d, b: d.update(values)


HOSTILE = [
    ("outside-storage", disk(lambda b: os.path.join(b.elsewhere, "job.gcode")),
     ("file.disk '{elsewhere}/job.gcode' is outside the storage folder {storage} (if that is "
     "the file you printed: printpipe recover {elsewhere}/job.gcode)")),
    ("dot-dot", disk(lambda b: os.path.join(b.storage, "..", "elsewhere", "job.gcode")),
     "file.disk '{storage}/../elsewhere/job.gcode' climbs out of its folder ('..')"),
    ("symlink-escape", disk(symlink_out),
     ("file.disk '{storage}/link.gcode' leads out of the storage folder {storage} through a "
     "link (to {elsewhere}/job.gcode)")),
    ("absolute-elsewhere", disk(lambda b: "/etc/passwd"),
     "file.disk '/etc/passwd' is outside the storage folder {storage}"),
    ("relative-path", disk(lambda b: "job.gcode"), "file.disk 'job.gcode' is not an absolute path"),
    ("offset-mid-line", lambda d, b: d.update(filepos=d["filepos"] - 3),
     "filepos {filepos-3} is not at the start of a line of job.gcode"),
    ("offset-past-end", lambda d, b: d.update(filepos=d["file"]["size"] + 10),
     "filepos {size+10} is past the end of job.gcode ({size} bytes)"),
    ("line-inconsistent", top(line=LINE + 1),
     "line 11 does not match filepos {filepos}: 10 lines of job.gcode end by it"),
    ("line-after-offset", top(line=10**6), "line 1000000 cannot end by filepos {filepos}"),
    ("position-nan", state(x=math.nan), "state.x nan is not a finite number"),
    ("position-inf", state(y=math.inf), "state.y inf is not a finite number"),
    ("position-1e20", state(z=1e20), "state.z 1e+20 is outside -10..300 mm"),
    ("position-huge-int", state(x=10**400), "state.x 1" + "0" * 31 + "... (401 "
     "characters) is outside ±300 mm"),
    ("extruder-1e20", state(e=-1e20), "state.e -1e+20 is outside ±1e+06 mm"),
    ("feed-rate-zero", state(f=0), "state.f 0 is not a feed rate (it must be above 0)"),
    ("feed-rate-huge", state(f=1e9), "state.f 1000000000.0 is outside 0..100000 mm/min"),
    ("hotend-over-limit", state(hotends={"0": 999.0}),
     "state.hotends.0 999.0 is outside 0..300 °C (printer.profile.limits.hotend)"),
    ("bed-negative", state(bed=-5), "state.bed -5 is outside 0..150 °C"),
    ("bed-inf", state(bed=math.inf), "state.bed inf is not a finite number"),
    ("fan-over-255", state(fan=300), "state.fan 300 is outside 0..255"),
    ("unknown-tool", state(tool=3),
     "state.tool 3 is not a tool of this printer (printer.profile.extruders: 1)"),
    ("unknown-hotend", state(hotends={"0": 200.0, "4": 200.0}),
     "state.hotends has 2 entries for 1 tools"),
    ("hotend-not-a-tool", state(hotends={"-1": 200.0}), "state.hotends.-1 is not a tool"),
    ("position-as-text", state(x="10"), "state.x '10' is not a number"),
    ("mode-as-number", state(relative_e=1), "state.relative_e 1 is not true or false"),
    ("offset-as-float", top(filepos=12.5), "filepos 12.5 is not a whole number"),
    ("file-as-list", top(file=["job.gcode"]), "file ['job.gcode'] is not an object"),
    ("control-character", lambda d, b: d["file"].update(path="job\n.gcode"),
     "file.path 'job\\n.gcode' is not a printable name"),
    ("origin", lambda d, b: d["file"].update(origin="sdcard"),
     "file.origin 'sdcard' is not 'local'"),
    ("time-1e20", top(time=1e20), "time 1e+20 is outside 0..1e11 seconds"),
    ("version", top(version=2), "version 2 is not a known journal version"),
    ("missing-fields", lambda d, b: (d["state"].pop("z"), d["state"].pop("bed")),
     "state.z, state.bed are missing"),
    ("extra-huge-field", top(notes="x" * 10_000), "notes is not a field of a print journal"),
    ("extra-nested", state(more={"a": [[[1]]]}), "state.more is not a field of a print journal"),
]


#: Rows whose file lies outside the storage folder: kept for `printpipe recover FILE`.
KEPT = ("outside-storage", "absolute-elsewhere")


@pytest.mark.parametrize(("row", "change", "message"), HOSTILE, ids=[r[0] for r in HOSTILE])
async def test_each_hostile_journal_is_refused_in_one_line_naming_the_field(
        bench, caplog, row, change, message):
    data = bench.journal()
    expected = message.format(storage=bench.storage, elsewhere=bench.elsewhere,
                              filepos=data["filepos"], size=data["file"]["size"],
                              **{"filepos-3": data["filepos"] - 3,
                                 "size+10": data["file"]["size"] + 10})
    change(data, bench)
    path = os.path.join(bench.state, "journal.json")
    with open(path, "w") as f:
        f.write(json.dumps(data))  # NaN and Infinity as Python writes them
    published: list[Any] = []
    recovery = bench.recovery(published)
    with caplog.at_level(logging.ERROR, logger="printpipe.journal"):
        assert await recovery.load() is None
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"{path}: {expected}"), line
    assert "\n" not in line and not any(r.exc_info for r in caplog.records)
    assert recovery.interrupted is None and recovery.status() is None and published == []
    aside = [n for n in os.listdir(bench.state) if n.startswith("journal.json.bad-")]
    if row in KEPT:
        assert aside == [] and os.path.exists(path)
    else:
        assert len(aside) == 1 and not os.path.exists(path)
    with pytest.raises(JobStateError, match="there is no interrupted print to recover"):
        await recovery.take()


async def test_the_same_journal_unchanged_is_offered(bench, caplog):
    """The control row: every hostile journal above is this one with one change."""
    with open(os.path.join(bench.state, "journal.json"), "w") as f:
        json.dump(bench.journal(), f)
    published: list[Any] = []
    recovery = bench.recovery(published)
    journal = await recovery.load()
    assert journal is not None and recovery.status()["problem"] is None
    assert [str(e) for e, _ in published] == ["PrintInterrupted"]
    assert (await recovery.take()).file.disk == bench.job


async def test_a_file_outside_storage_is_resumed_when_the_user_names_it(bench):
    data = bench.journal()
    outside = os.path.join(bench.elsewhere, "job.gcode")
    data["file"]["disk"] = outside
    data["file"]["mtime_ns"] = os.stat(outside).st_mtime_ns
    with open(os.path.join(bench.state, "journal.json"), "w") as f:
        json.dump(data, f)
    recovery = bench.recovery([])
    recovery.named = os.path.join(bench.elsewhere, ".", "job.gcode")
    assert (await recovery.load()) is not None
    assert (await recovery.take()).file.disk == outside


async def test_a_file_swapped_for_a_link_out_after_the_offer_is_refused_at_resume(bench, caplog):
    with open(os.path.join(bench.state, "journal.json"), "w") as f:
        json.dump(bench.journal(), f)
    recovery = bench.recovery([])
    assert await recovery.load() is not None
    os.remove(bench.job)
    os.symlink(os.path.join(bench.elsewhere, "job.gcode"), bench.job)
    with pytest.raises(JobStateError, match=r"journal.json: file.disk '.*' leads out of the "
                                            r"storage folder"):
        await recovery.take()
    assert recovery.interrupted is None


@pytest.mark.parametrize(("body", "why"), [
    (b"[" * 10_000, "nests too deep to be one"),
    (b'{"notes": "' + b"x" * 20_000 + b'"}', "is over 16384 bytes"),
])
async def test_a_journal_too_deep_or_too_big_is_refused_without_a_traceback(bench, caplog,
                                                                            body, why):
    with open(os.path.join(bench.state, "journal.json"), "wb") as f:
        f.write(body)
    with caplog.at_level(logging.ERROR, logger="printpipe.journal"):
        assert await bench.recovery([]).load() is None
    (line,) = [r.getMessage() for r in caplog.records]
    assert why in line and "set aside as" in line
