"""Hook handlers for the printer-level phases, written as OctoPrint plugins write them."""

calls = []


def refuse_connect(*args, **kwargs):
    calls.append(("handle_connect", kwargs.get("port"), kwargs.get("baudrate")))
    return True


def allow_connect(*args, **kwargs):
    calls.append(("handle_connect", kwargs.get("port"), kwargs.get("baudrate")))


def port_names(candidates, *args, **kwargs):
    calls.append(("additional_port_names", list(candidates)))
    return ["/nonexistent/printpipe-extra-port"]


def factory(comm_instance, port, baudrate, read_timeout, *args, **kwargs):
    calls.append(("factory", port, baudrate, read_timeout))
    return FACTORY_TARGET[0]


FACTORY_TARGET = [None]


class Estimator:
    def __init__(self, job_type):
        calls.append(("estimator", job_type))

    # OctoPrint's PrintTimeEstimator.estimate signature, camelCase names and all
    def estimate(self, progress, printTime, cleanedPrintTime,  # noqa: N803 (OctoPrint's names)
                 statisticalTotalPrintTime, statisticalTotalPrintTimeType):  # noqa: N803 (same)
        return 4242.0, "estimate"


def estimator_factory(*args, **kwargs):
    return Estimator


def state_data(initial=False, *args, **kwargs):
    return {"initial": initial, "answer": 42}


def custom_events(*args, **kwargs):
    return ["my_custom_event", "my_other_custom_event"]


def firmware_info(comm_instance, firmware_name, firmware_data, *args, **kwargs):
    calls.append(("firmware.info", firmware_name, sorted(firmware_data)))


def capabilities(comm_instance, capability, enabled, already_defined, *args, **kwargs):
    calls.append(("capabilities", capability, enabled))


def capability_report(comm_instance, capabilities, *args, **kwargs):
    calls.append(("capability_report", sorted(capabilities)))


def action(comm_instance, line, action, name="", params="", *args, **kwargs):
    calls.append(("action", line, action, name, params))


def error(comm_instance, error_message, *args, **kwargs):
    calls.append(("error", error_message))
    return "fan error" in error_message.lower()


def temperatures(comm_instance, parsed_temperatures, *args, **kwargs):
    calls.append(("temperatures", dict(parsed_temperatures)))
    return {k: v for k, v in parsed_temperatures.items() if v[0] is None or v[0] < 1000}


def x3g(*args, **kwargs):
    return {"machinecode": {"x3g": ["x3g", "s3g"]}}


class Stripped:
    """A preprocessor's replacement file object: strips every comment (the seed's example)."""

    def __init__(self, inner):
        self.inner = inner
        self.filename = inner.filename

    def stream(self):
        return self.inner.stream()

    def save(self, path):
        with self.inner.stream() as src, open(path, "wb") as dst:
            for line in src:
                code = line.split(b";", 1)[0].strip()
                if code:
                    dst.write(code + b"\n")


def strip_all_comments(path, file_object, links=None, printer_profile=None,
                       allow_overwrite=False, *args, **kwargs):
    calls.append(("preprocessor", path, file_object.filename, allow_overwrite))
    if not file_object.filename.endswith("_strip.gcode"):
        return file_object
    return Stripped(file_object)


def system_cmds(*args, **kwargs):
    return [{"name": "Reboot", "action": "reboot", "command": "sudo reboot",
             "confirm": "Sure?"},
            {"name": "Bad", "action": "Not Valid!", "command": "x"}]


#: Where the runnable system commands leave their mark (set by the test).
MARKER = "/nonexistent/printpipe-marker"


def _refuse() -> None:
    raise RuntimeError("not today")


def runnable_system_cmds(*args, **kwargs):
    return [{"name": "Mark", "action": "mark", "command": f"echo marked > '{MARKER}'",
             "confirm": "Leave a mark?"},
            {"name": "Fail", "action": "fail", "command": "echo broken >&2; exit 3"},
            {"name": "Fail quietly", "action": "fail-ignored", "command": "exit 3",
             "ignore": True},
            {"name": "Refused", "action": "refused", "command": f"touch '{MARKER}.before'",
             "before": _refuse}]
