"""When a frame is due and how the movie is made, pure: the zchange rule (a Z change while
printing, at least `min_delay` seconds after the last frame, a retraction hop ignored), the
post roll (frames repeated or shot), the event payloads OctoPrint 1.11.8 sends, the capture
hook contracts, and ffmpeg's command line (rotation and flips as filters, low priority).
"""

from __future__ import annotations

import logging
import math
import posixpath
from typing import Any

from pipeline.config.camera import TimelapseMode, TimelapseSpec, WebcamSpec
from pipeline.hooks.chain import Pipeline
from pipeline.phases import Phase

log = logging.getLogger("printpipe.timelapse")

_HOP_TOLERANCE = 0.005


def zchange_due(spec: TimelapseSpec, new: float | None, old: float | None, *, now: float,
                last: float) -> bool:
    """A ZChange (new, old) earns a frame: not a retraction hop's move up or back, and at
    least min_delay s after the last frame (`last`, -inf before the first)."""
    if new is None:
        return False
    hop = spec.retraction_zhop
    if hop and old is not None and abs(abs(new - old) - hop) < _HOP_TOLERANCE:
        return False
    return now - last >= spec.min_delay


def post_roll_frames(spec: TimelapseSpec) -> int:
    """How many frames the post roll adds (seconds x fps)."""
    return round(spec.post_roll * spec.fps)


def post_roll_start(spec: TimelapseSpec) -> dict[str, Any]:
    """PostRollStart's payload: postroll_duration (s), postroll_length (frames), postroll_fps
    (frames shot per second of the post roll: fps when repeating, 1/interval when shooting)."""
    if spec.mode is TimelapseMode.TIMED:
        length = math.ceil(spec.post_roll / spec.interval) if spec.post_roll else 0
        fps = 1.0 / spec.interval
    else:
        length = post_roll_frames(spec)
        fps = float(spec.fps)
    return {"postroll_duration": spec.post_roll, "postroll_length": length,
            "postroll_fps": fps}


def movie_payload(gcode: str, movie: str, prefix: str, **extra: Any) -> dict[str, Any]:
    """MovieRendering / MovieDone / MovieFailed's payload (extra: returncode, error, reason)."""
    return {"gcode": gcode, "movie": movie, "movie_basename": posixpath.basename(movie),
            "movie_prefix": prefix, **extra}


def api_config(spec: TimelapseSpec) -> dict[str, Any]:
    """The timelapse config as OctoPrint's /api/timelapse and push socket show it."""
    out: dict[str, Any] = {"type": spec.mode.value, "postRoll": spec.post_roll,
                           "fps": spec.fps, "renderAfterPrint": spec.render_after_print}
    if spec.mode is TimelapseMode.TIMED:
        out["interval"] = spec.interval
    elif spec.mode is TimelapseMode.ZCHANGE:
        out["retractionZHop"] = spec.retraction_zhop
        out["minDelay"] = spec.min_delay
        out["park"] = spec.park.enabled
    return out


def capture_pre(pipeline: Pipeline, filename: str) -> None:
    """`timelapse.capture.pre` stages, each called with the frame's future path."""
    pipeline.call(Phase.TIMELAPSE_CAPTURE_PRE, filename)


def capture_post(pipeline: Pipeline, filename: str, success: bool) -> None:
    """`timelapse.capture.post` stages: the frame's path and whether it was saved."""
    pipeline.call(Phase.TIMELAPSE_CAPTURE_POST, filename, success)


def video_filters(webcam: WebcamSpec) -> list[str]:
    """ffmpeg filters for the picture's flips and rotation (clockwise)."""
    out = []
    if webcam.flip_h:
        out.append("hflip")
    if webcam.flip_v:
        out.append("vflip")
    out += {0: [], 90: ["transpose=1"], 180: ["hflip", "vflip"],
            270: ["transpose=2"]}[webcam.rotate]
    return out


def ffmpeg_argv(spec: TimelapseSpec, webcam: WebcamSpec, pattern: str, output: str, *,
                nice: str | None = "nice") -> list[str]:
    """The render's argv: `nice -n N ffmpeg ...` over the frames of `pattern` into `output`
    (written whole, progress on stdout)."""
    argv = [nice, "-n", str(spec.nice)] if nice else []
    argv += [spec.ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
             "-progress", "pipe:1", "-framerate", str(spec.fps), "-start_number", "0",
             "-i", pattern, "-threads", str(spec.threads)]
    filters = video_filters(webcam)
    if spec.format == "gif":
        argv += ["-vf", ",".join(filters)] if filters else []
    else:
        filters.append("pad=ceil(iw/2)*2:ceil(ih/2)*2")  # yuv420p needs even sizes
        argv += ["-vcodec", spec.video_codec, "-b:v", spec.bitrate, "-pix_fmt", "yuv420p",
                 "-r", str(spec.fps), "-vf", ",".join(filters)]
    argv += ["-f", _MUXERS.get(spec.format, spec.format), output]
    return argv


_MUXERS = {"mkv": "matroska", "m4v": "mp4", "mpg": "mpeg"}
