"""Capture and extension hooks, written as OctoPrint plugins write them (seed 002), for the
timelapse tests: they record their calls."""

CALLS: list[tuple] = []


def capture_pre(filename):
    CALLS.append(("pre", filename))


def capture_post(filename, success):
    CALLS.append(("post", filename, success))


def extensions(*args, **kwargs):
    return ["apng"]
