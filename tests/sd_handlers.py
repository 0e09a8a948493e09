"""Hook handlers for the SD card's phases, written as OctoPrint plugins write them."""

calls = []


def record_upload_lines(comm_instance, phase, cmd, cmd_type, gcode, *args, **kwargs):
    tags = kwargs.get("tags") or set()
    if "source:sdupload" in tags:
        calls.append((phase, cmd))


def stamp_m117(comm_instance, phase, cmd, cmd_type, gcode, *args, **kwargs):
    """comm.protocol.gcode.sending.sd: what the card stores may differ from the file."""
    calls.append(("sd", phase, cmd))
    if gcode == "M117":
        return ("M117 stamped",)
    return None


def take_upload(printer, filename, path, sd_upload_started, sd_upload_succeeded,
                sd_upload_failed, *args, **kwargs):
    remote = "taken.gco"
    calls.append(("upload", filename, path))
    sd_upload_started(filename, remote)
    sd_upload_succeeded(filename, remote, 1.5)
    return remote


def decline_upload(printer, filename, path, *args, **kwargs):
    calls.append(("declined", filename))
    return None
