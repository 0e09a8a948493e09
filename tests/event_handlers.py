"""Handlers the event tests declare in YAML: record what a subscription sent, with its tags."""

from __future__ import annotations

RECORDED: list[tuple[str, frozenset]] = []


def record_m117(comm, phase, cmd, cmd_type, gcode, subcode=None, tags=None):
    if gcode == "M117":
        RECORDED.append((cmd, frozenset(tags or ())))
