"""G-code scripts (seed 000): a sandboxed Jinja2 environment with the `{% snippet %}` tag,
compiled at load, rendered whole before anything is sent.

Names: scripts are templates `gcode/<name>`, snippets `gcode/snippets/<name>`; a snippet is
resolved relative to the including template's folder (a leading `/` makes it absolute).
Undefined values chain (`pause_position.x` on a missing position is undefined, not an error)
and the `none` test is true for None and undefined, so `{% if x is not none %}` guards work
whatever is missing; but printing None, an undefined or an empty value is an error, so a
script can never put `G1 X` or `G1 XNone` on the wire. A render is bounded, whatever its
context says: at most `scripts.max_lines` lines of output (comments and blank lines
included), `range()` no longer than that, and no text or number grown past MAX_TEXT by `*` or
`**`. Every error is a ScriptError naming the script (or snippet) and its line. No trio; the
only IO is reading the scripts folder.
"""

from __future__ import annotations

import operator
import pathlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import SandboxedEnvironment

from pipeline.config.schema import ScriptsSpec
from pipeline.errors import ScriptError
from pipeline.gcode import split_lines, strip_comment

#: The most lines a script renders to (`scripts.max_lines`'s default), and the most characters
#: a rendered line has on average (the output is cut off at max_lines times this).
MAX_LINES: int = ScriptsSpec().max_lines
LINE_CHARS = 256
#: The longest text or list `*` may make, and the most bits of a number `**` may make.
MAX_TEXT = 65536

SCRIPT_NAMES = ("afterPrinterConnected", "beforePrinterDisconnected", "beforePrintStarted",
                "afterPrintCancelled", "afterPrintDone", "afterPrintPaused",
                "beforePrintResumed", "beforeToolChange", "afterToolChange",
                "beforePrintRecovered")

#: The recovery prologue (`printpipe recover`): the machine as the crash journal recorded it,
#: then the file continues with its first line the printer had not acknowledged. `recovery`
#: holds the values (pipeline/session/recovery.py, `recovery_context`).
RECOVERED = """\
; printpipe resumes {{ recovery.file.path }} after its line {{ recovery.line }}
{% set lift = 2 %}
; heat to the print's targets, and wait
{% if recovery.bed is not none %}
M140 S{{ recovery.bed }}
{% endif %}
{% for tool, target in recovery.hotends.items() %}
M104 T{{ tool }} S{{ target }}
{% endfor %}
{% if recovery.bed is not none %}
M190 S{{ recovery.bed }}
{% endif %}
{% for tool, target in recovery.hotends.items() %}
M109 T{{ tool }} S{{ target }}
{% endfor %}
{% if printer_profile.extruder.count > 1 %}
T{{ recovery.tool }}
{% endif %}
; Z is not homed (the nozzle would hit the print): lift a little, then say where Z is
G91
G1 Z{{ lift }} F600
G90
G92 Z{{ (recovery.z + lift) | round(4) }}
; home X and Y only
G28 X Y
; back over the last position, then down to the print
{% if recovery.x is not none and recovery.y is not none %}
G1 X{{ recovery.x }} Y{{ recovery.y }} F3000
{% endif %}
G1 Z{{ recovery.z }} F600
; extruder mode and position, fan, feed rate
{% if recovery.relative_extruder %}
M83
G92 E0
{% else %}
M82
G92 E{{ recovery.e if recovery.e is not none else 0 }}
{% endif %}
{% if recovery.fan %}
M106 S{{ recovery.fan }}
{% else %}
M107
{% endif %}
{% if recovery.f is not none %}
G1 F{{ recovery.f }}
{% endif %}
"""

BUNDLED: dict[str, str] = {
    "afterPrintCancelled": ("; disable motors\nM84\n\n;disable all heaters\n"
                            "{% snippet 'disable_hotends' %}\n{% snippet 'disable_bed' %}\n"
                            ";disable fan\nM106 S0\n"),
    "snippets/disable_hotends": ("{% if printer_profile.extruder.sharedNozzle %}\n"
                                 "M104 T0 S0\n{% else %}\n"
                                 "{% for tool in range(printer_profile.extruder.count) %}\n"
                                 "M104 T{{ tool }} S0\n{% endfor %}\n{% endif %}\n"),
    "snippets/disable_bed": "{% if printer_profile.heatedBed %}\nM140 S0\n{% endif %}\n",
    "beforePrintRecovered": RECOVERED,
    # steady timelapse frames (timelapse.park): the session restores the position after it
    "timelapsePark": ("{% if park.retract %}M83\n"
                      "G1 E-{{ park.retract }} F{{ park.retract_speed }}\n{% endif %}"
                      "{% if park.lift %}G91\nG1 Z{{ park.lift }} F{{ park.z_speed }}\n"
                      "{% endif %}G90\nG1 X{{ park.x }} Y{{ park.y }} F{{ park.travel_speed }}\n"
                      "M400\n"),
}

_SNIPPET = "@snippet:"


class Plain(float):
    """A number a script prints as a plain decimal (`G92 Z0.3`), never as `1e+20`."""

    def __str__(self) -> str:
        text = f"{self:.5f}".rstrip("0").rstrip(".")
        return "0" if text == "-0" else text


class _BadValue(Exception):
    """What an expression printed must not be sent (the render fails at its line)."""


def _finalize(value: Any) -> Any:
    if value is None or isinstance(value, jinja2.Undefined) or value == "":
        what = "None" if value is None else "an empty value" if value == "" else "undefined"
        raise _BadValue(f"an expression printed {what}; guard it with "
                        "{% if ... is not none %}")
    if isinstance(value, str) and not value.isprintable():
        raise _BadValue(f"an expression printed {value!r}, which holds a control character: "
                        "a value can never add a line or break one")
    return value


def _is_none(value: Any) -> bool:
    return value is None or isinstance(value, jinja2.Undefined)


class SnippetTag(Extension):
    """`{% snippet 'name' %}`: include `snippets/<name>` with the caller's context."""

    tags = {"snippet"}  # noqa: RUF012 (Jinja2 reads the class attribute it declares so)

    def parse(self, parser: Any) -> list[nodes.Node]:
        lineno = next(parser.stream).lineno
        name = parser.parse_expression()
        target = nodes.Concat([nodes.Const(_SNIPPET), name], lineno=lineno)
        # A snippet always ends its line: without this newline a snippet file lacking a
        # final newline would glue its last command to the next one (trim_blocks eats
        # the newline after the tag).
        return [nodes.Include(target, True, False, lineno=lineno),
                nodes.Output([nodes.TemplateData("\n")], lineno=lineno)]


class _Loader(jinja2.BaseLoader):
    """Templates from a dict, each reporting its own name as its file name (so traceback
    frames of a render error tell which script or snippet failed, and on which line)."""

    def __init__(self, sources: Mapping[str, str]) -> None:
        self.sources = sources

    def get_source(self, environment: jinja2.Environment, template: str
                   ) -> tuple[str, str, Callable[[], bool]]:
        if template not in self.sources:
            raise jinja2.TemplateNotFound(template)
        return self.sources[template], template, lambda: True


class _TooLarge(Exception):
    """A render that would grow past its bounds (the render fails at its line)."""


class _Env(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, *args: Any, max_lines: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_lines = max_lines
        self.globals["range"] = self._range

    def _range(self, *args: int) -> range:
        """range(), no longer than a script may be."""
        r = range(*args)
        try:
            n = len(r)
        except OverflowError:  # more items than an index holds
            n = sys.maxsize
        if n > self.max_lines:
            many = n if n < sys.maxsize else "countless"
            raise _TooLarge(f"range() of {many} items: a script renders at most "
                            f"{self.max_lines} lines (scripts.max_lines)")
        return r

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**":
            if (isinstance(left, int) and isinstance(right, int) and abs(left) > 1
                    and right * abs(left).bit_length() > MAX_TEXT):
                raise _TooLarge(f"{left} ** {right} is too large a number")
            return left ** right
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(times, int) \
                    and len(seq) * times > MAX_TEXT:
                raise _TooLarge(f"* would make {len(seq) * times} items (at most {MAX_TEXT})")
        return operator.mul(left, right)

    def join_path(self, template: str, parent: str) -> str:
        if not template.startswith(_SNIPPET):
            return template
        name = template[len(_SNIPPET):]
        if name.startswith("/"):
            return "gcode/snippets/" + name.lstrip("/")
        folder = parent.rsplit("/", 1)[0] if "/" in parent else ""
        base = folder if folder.endswith("snippets") else f"{folder}/snippets"
        return f"{base}/{name}".lstrip("/")


def _environment(sources: Mapping[str, str], *, strict: bool,
                 max_lines: int = MAX_LINES) -> _Env:
    env = _Env(max_lines=max_lines, loader=_Loader(dict(sources)), trim_blocks=True,
               lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
               undefined=jinja2.StrictUndefined if strict else jinja2.ChainableUndefined,
               finalize=_finalize, extensions=[SnippetTag, "jinja2.ext.do",
                                               "jinja2.ext.loopcontrols"])
    env.tests["none"] = (lambda v: v is None) if strict else _is_none
    return env


def _display(template: str | None) -> str:
    return (template or "?").removeprefix("gcode/")


def _error(exc: BaseException, script: str, names: set[str]) -> ScriptError:
    """A Jinja or render error as a ScriptError at the template line it happened on."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return ScriptError(exc.message or str(exc), script=_display(exc.name or script),
                           line=exc.lineno)
    where, line = script, None
    tb = exc.__traceback__
    while tb is not None:
        fname = tb.tb_frame.f_code.co_filename
        if fname in names:
            where, line = fname, tb.tb_lineno
        tb = tb.tb_next
    if isinstance(exc, jinja2.TemplateNotFound):
        missing = str(exc.name or exc)
        message = f"unknown snippet {missing.removeprefix('gcode/snippets/')!r}"
    else:
        message = str(exc) or type(exc).__name__
    return ScriptError(message, script=_display(where), line=line)


class ScriptSet:
    """Every available script and snippet, compiled."""

    def __init__(self, sources: Mapping[str, str], *, max_lines: int = MAX_LINES) -> None:
        self._sources = dict(sources)
        self._names = set(self._sources)
        self.max_lines = max_lines
        self._env = _environment(self._sources, strict=False, max_lines=max_lines)
        self._templates: dict[str, jinja2.Template] = {}

    @classmethod
    def sources(cls, folder: str | None, inline: Mapping[str, str],
                bundled: Mapping[str, str] = BUNDLED) -> dict[str, str]:
        """Template texts by full name; folder files over inline over bundled."""
        out = {f"gcode/{k}": v for k, v in bundled.items()}
        out.update({f"gcode/{k}": v for k, v in inline.items()})
        if folder:
            root = pathlib.Path(folder) / "gcode"
            for sub in (root, root / "snippets"):
                if not sub.is_dir():
                    continue
                for f in sorted(sub.iterdir()):
                    if f.is_file() and not f.name.startswith("."):
                        rel = f.relative_to(root.parent).as_posix()
                        out[rel] = f.read_text(encoding="utf-8")
        return out

    @classmethod
    def load(cls, folder: str | None, inline: Mapping[str, str], *,
             bundled: Mapping[str, str] = BUNDLED, max_lines: int = MAX_LINES) -> ScriptSet:
        """Load and compile everything; the first compile error is raised."""
        scripts = cls(cls.sources(folder, inline, bundled), max_lines=max_lines)
        problems = scripts.compile_all()
        if problems:
            raise problems[0]
        return scripts

    @classmethod
    def check_all(cls, folder: str | None, inline: Mapping[str, str],
                  sample: Mapping[str, Any] | None = None, *,
                  max_lines: int = MAX_LINES) -> list[ScriptError]:
        """Every problem: compile errors, then strict renders against a sample context."""
        scripts = cls(cls.sources(folder, inline), max_lines=max_lines)
        problems = scripts.compile_all()
        seen = {str(p) for p in problems}
        for p in scripts.lint(sample if sample is not None else sample_context()):
            if str(p) not in seen:  # a broken template fails its lint render again
                seen.add(str(p))
                problems.append(p)
        return problems

    def compile_all(self) -> list[ScriptError]:
        problems = []
        for name in sorted(self._sources):
            try:
                self._templates[name] = self._env.get_template(name)
            except jinja2.TemplateError as exc:
                problems.append(_error(exc, _display(name), self._names))
        return problems

    def names(self) -> list[str]:
        return sorted(n[6:] for n in self._sources if not n.startswith("gcode/snippets/"))

    def has(self, name: str) -> bool:
        return f"gcode/{name}" in self._sources

    def render(self, name: str, context: Mapping[str, Any]) -> list[str]:
        """The script's G-code lines (comments and blank lines dropped); [] if unknown."""
        template = self._templates.get(f"gcode/{name}")
        if template is None:
            return []
        return self._render(template, name, context)

    def _render(self, template: jinja2.Template, name: str,
                context: Mapping[str, Any]) -> list[str]:
        limit = self.max_lines
        size = lines = 0
        pieces: list[str] = []
        try:  # piece by piece: a render past its bounds stops there, not at its end
            for piece in template.generate(**context):
                lines += piece.count("\n")
                size += len(piece)
                if lines > limit or size > limit * LINE_CHARS:
                    raise ScriptError(f"it renders more than {limit} lines (scripts.max_lines)"
                                      if lines > limit else f"it renders more than "
                                      f"{limit * LINE_CHARS} characters", script=name)
                pieces.append(piece)
        except ScriptError:
            raise
        except Exception as exc:  # noqa: BLE001 (any template failure is the script's fault)
            raise _error(exc, name, self._names) from None
        return [c for c in (strip_comment(line) for line in split_lines("".join(pieces))) if c]

    def lint(self, sample: Mapping[str, Any]) -> list[ScriptError]:
        """Render every script with strict undefined against `sample`; every problem."""
        env = _environment(self._sources, strict=True, max_lines=self.max_lines)
        problems = []
        for name in self.names():
            try:
                self._render(env.get_template(f"gcode/{name}"), name, sample)
            except ScriptError as exc:
                problems.append(exc)
            except jinja2.TemplateError as exc:
                problems.append(_error(exc, name, self._names))
        return problems


def profile_context(extruders: int = 1, shared_nozzle: bool = False, heated_bed: bool = True,
                    heated_chamber: bool = False, width: float = 200.0, depth: float = 200.0,
                    height: float = 200.0, name: str = "default") -> dict[str, Any]:
    """The printer profile in OctoPrint's data model, as scripts see it."""
    return {"id": name, "name": name, "model": name, "heatedBed": heated_bed,
            "heatedChamber": heated_chamber,
            "volume": {"width": width, "depth": depth, "height": height,
                       "formFactor": "rectangular", "origin": "lowerleft"},
            "extruder": {"count": extruders, "sharedNozzle": shared_nozzle,
                         "nozzleDiameter": 0.4, "offsets": [(0.0, 0.0)] * extruders}}


def sample_context(profile: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every seed variable with plausible values (for `printpipe check`)."""
    pos = {"x": 10.0, "y": 20.0, "z": 0.3, "e": 1.5, "f": 3000.0, "t": 0}
    temps = {0: {"actual": 210.0, "target": 210.0}, "b": {"actual": 60.0, "target": 60.0}}
    return {"printer_profile": dict(profile or profile_context()), "last_position": pos,
            "last_temperature": temps, "last_fanspeed": 255, "relative_axes_requested": False,
            "relative_extruder_requested": False, "script": {"type": "gcode", "name": "check"},
            "plugins": {}, "event": {"name": "sample.gcode", "path": "sample.gcode",
                                     "origin": "local", "size": 1000},
            "pause_position": pos, "pause_temperature": temps, "pause_fanspeed": 255,
            "cancel_position": pos, "cancel_temperature": temps, "cancel_fanspeed": 255,
            "tool": {"old": 0, "new": 1}, "parameters": {}, "context": {},
            "recovery": {"file": {"name": "sample.gcode", "path": "sample.gcode",
                                  "origin": "local", "size": 1000},
                         "line": 120, "filepos": 4000, "x": 10.0, "y": 20.0, "z": 0.6,
                         "e": 12.5, "f": 1800.0, "relative_extruder": False, "fan": 255,
                         "tool": 0, "hotends": {0: 210.0}, "bed": 60.0},
            "park": {"x": 0.0, "y": 200.0, "lift": 0.5, "retract": 1.0, "retract_speed": 2400.0,
                     "travel_speed": 9000.0, "z_speed": 600.0, "layer": 3, "z": 0.6}}

