"""Built-in stage `rewrite`: ordered rewrite rules declared in YAML.

    - stage: rewrite
      with:
        rules:
          - gcode: M107            # the command's G-code word, exactly (M80.1 also pins a subcode)
            replace: M106 S0       # the whole new command; empty = suppress the command
          - pattern: '^M104 S(\\d+)'   # a Python regex, searched in the command text
            replace: M104 S\\1 T0      # re.sub template applied to the command

Rules are tried in the order written and the first that matches decides. The schema checks
regexes and templates when the config loads; build() compiles them once. No IO, no state.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import strictyaml as sy
from strictyaml.compound import Map

from pipeline.phases import Phase
from stages.options import Comm, Rewrite

NAME = "rewrite"
PHASES: frozenset[Phase] = frozenset({Phase.GCODE_QUEUING, Phase.GCODE_SENDING})

_GCODE_RE = re.compile(r"[GM]\d+(?:\.\d+)?|T")
_SUPPRESS = (None,)


class _GcodeWord(sy.ScalarValidator):  # type: ignore[misc]  # strictyaml has no types
    def validate_scalar(self, chunk: Any) -> str:
        text: str = chunk.contents
        if not _GCODE_RE.fullmatch(text):
            chunk.expecting_but_found(
                "when expecting a G-code word like M107, G28, M80.1 or T (case matters)",
                f"found {text!r}")
        return text


class _Pattern(sy.ScalarValidator):  # type: ignore[misc]  # strictyaml has no types
    def validate_scalar(self, chunk: Any) -> str:
        text: str = chunk.contents
        try:
            re.compile(text)
        except re.error as exc:
            chunk.expecting_but_found("when expecting a Python regular expression",
                                      f"found {text!r}, which is invalid: {exc}")
        return text


class _OneLine(sy.ScalarValidator):  # type: ignore[misc]  # strictyaml has no types
    def validate_scalar(self, chunk: Any) -> str:
        text: str = chunk.contents
        if "\n" in text.strip():
            chunk.expecting_but_found("when expecting a single command", "found several lines")
        return text.strip()


class _Rule(Map):  # type: ignore[misc]  # strictyaml has no types
    """A rule map with exactly one of `gcode:` / `pattern:`, and a template that fits."""

    def validate(self, chunk: Any) -> None:
        super().validate(chunk)
        data = {str(k): v for k, v in chunk.contents.items()}
        if ("gcode" in data) == ("pattern" in data):
            chunk.expecting_but_found("while parsing a rewrite rule",
                                      "a rule needs exactly one of `gcode:` or `pattern:`")
        if "pattern" in data:
            problem = _template_problem(re.compile(data["pattern"]), data["replace"].strip())
            if problem:
                chunk.expecting_but_found("while parsing a rewrite rule",
                                          f"replace {data['replace']!r} does not fit the "
                                          f"pattern: {problem}")


def _template_problem(pattern: re.Pattern[str], template: str) -> str | None:
    """Expand `template` against an empty match with the pattern's groups (names included)."""
    names = {number: name for name, number in pattern.groupindex.items()}
    probe = "".join(f"(?P<{names[i]}>)" if i in names else "()"
                    for i in range(1, pattern.groups + 1))
    try:
        re.compile(probe).sub(template, "", count=1)
    except (re.error, IndexError) as exc:
        return str(exc)
    return None


SCHEMA: sy.Validator = sy.Map({
    "rules": sy.Seq(_Rule({
        sy.Optional("gcode"): _GcodeWord(),
        sy.Optional("pattern"): _Pattern(),
        "replace": _OneLine(),
    })),
})


def build(options: Mapping[str, Any], stage_id: str) -> Callable[..., Rewrite]:
    """Return the gcode-phase handler for `options["rules"]` (already validated)."""
    # For first-match-wins across both kinds, every rule keeps its position.
    by_word: dict[str, tuple[int, Rewrite]] = {}
    patterns: list[tuple[int, re.Pattern[str], str]] = []
    for index, rule in enumerate(options["rules"]):
        replace = rule["replace"]
        if rule.get("gcode") is not None:
            result = (replace,) if replace else _SUPPRESS
            by_word.setdefault(rule["gcode"], (index, result))
        else:
            patterns.append((index, re.compile(rule["pattern"]), replace))
    no_match: tuple[int, Rewrite] = (len(options["rules"]), None)
    patterns_t = tuple(patterns)

    def rewrite(comm_instance: Comm | None, phase: str, cmd: str, cmd_type: str | None,
                gcode: str | None, subcode: str | None = None,
                tags: frozenset[str] | None = None, *args: Any, **kwargs: Any) -> Rewrite:
        hit = by_word.get(gcode, no_match) if gcode is not None else no_match
        if subcode is not None:
            exact = by_word.get(f"{gcode}.{subcode}")
            if exact is not None and exact[0] < hit[0]:
                hit = exact
        for index, regex, template in patterns_t:
            if index > hit[0]:
                break
            new, count = regex.subn(template, cmd)
            if count:
                new = new.strip()
                if new == cmd:
                    return None
                return (new,) if new else _SUPPRESS
        return hit[1]

    rewrite.__qualname__ = f"{NAME}[{stage_id}]"
    return rewrite
