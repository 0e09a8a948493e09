"""OctoPrint-style hook handlers written exactly as OctoPrint plugins write them (the seed's
examples and the return-contract variants), declared by import path in test configs."""

import logging

calls = []


def rewrite_m107(comm_instance, phase, cmd, cmd_type, gcode, *args, **kwargs):
    if gcode and gcode == "M107":
        cmd = "M106 S0"
    return (cmd,)


def sent_m106(comm_instance, phase, cmd, cmd_type, gcode, *args, **kwargs):
    if gcode and gcode == "M106":
        # locals() makes the registry call this by keyword (test_chain.py): keep it as it is
        logging.getLogger(__name__).info(
            "Just sent M106: {cmd}".format(**locals()))  # noqa: G001 (the seed's example verbatim)
        calls.append(("sent_m106", phase, cmd))


def record(comm_instance, phase, cmd, cmd_type, gcode, subcode=None, tags=None, *args, **kwargs):
    calls.append((phase, cmd, cmd_type, gcode, subcode, frozenset(tags or ())))


def expand_foo(comm_instance, phase, cmd, cmd_type, gcode, subcode=None, tags=None, *args,
               **kwargs):
    if gcode or not cmd.startswith("@foo"):
        return
    return [("M105", "temperature_poll"), ("M110",), f"M117 echo foo: {cmd}"]


def as_string(comm_instance, phase, cmd, cmd_type, gcode, *args, **kwargs):
    if gcode == "M117":
        return "M117 rewritten"


def suppress_m300(comm_instance, phase, cmd, cmd_type, gcode, *args, **kwargs):
    if gcode == "M300":
        return (None,)


def retype(comm_instance, phase, cmd, cmd_type, gcode, *args, **kwargs):
    if gcode == "M105":
        return cmd, "my_type"


def tag_it(comm_instance, phase, cmd, cmd_type, gcode, *args, **kwargs):
    return cmd, cmd_type, {"my_custom_tag"}


def explode(comm_instance, phase, cmd, cmd_type, gcode, *args, **kwargs):
    raise RuntimeError("boom")


def four_tuple(comm_instance, phase, cmd, cmd_type, gcode, *args, **kwargs):
    return cmd, cmd_type, set(), "extra"


def list_anywhere(comm_instance, phase, cmd, cmd_type, gcode, *args, **kwargs):
    return [cmd, "M117 extra"]


def received_upper(comm_instance, line, *args, **kwargs):
    calls.append(("received", line))
    if line.startswith("echo:hello"):
        return line.upper()
    return line


def wrong_signature(comm_instance, line):
    return line


def ignored_return(comm_instance, phase, cmd, cmd_type, gcode, *args, **kwargs):
    return "M999", "whatever", {"tag"}


def inject_line(comm_instance, phase, cmd, cmd_type, gcode, *args, **kwargs):
    """A careless handler: its rewrite holds a line break (a second command)."""
    if gcode == "M117":
        return "M117 hi\nM104 S250"
    return None
