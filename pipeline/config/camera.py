"""A printer's camera and timelapse settings: `webcam:` (where its snapshots and stream are,
how the picture is turned, how long a snapshot may take) and `timelapse:` (when frames are
taken, how the movie is rendered, how long frames and movies are kept, and the steady frames of
`timelapse.park`). Both are top-level sections that a printer's entry may override key by key
(config/printers.py), like `serial:`. No trio, no IO.
"""

from __future__ import annotations

import enum
import re

import attrs
import strictyaml as sy

from pipeline.config.options import (
    at_least,
    choice,
    flag,
    integer,
    number,
    option,
    subsection,
    text,
)


def _url(value: str | None) -> str | None:
    if not value:
        return None
    if not re.match(r"https?://[^\s/]+", value):
        return f"{value!r} is not an http:// or https:// URL"
    return None


def _path_url(value: str | None) -> str | None:
    """A stream URL may be a path on this host (/webcam/?action=stream), as OctoPrint's."""
    return None if value and value.startswith("/") and " " not in value else _url(value)


def _rotation(value: int) -> str | None:
    return None if value in (0, 90, 180, 270) else f"must be 0, 90, 180 or 270, not {value}"


def _bitrate(value: str) -> str | None:
    return None if re.fullmatch(r"\d+[kKmM]?", value) else (
        f"{value!r} is not a bitrate (e.g. 10000k or 5M)")


def _extension(value: str) -> str | None:
    return None if re.fullmatch(r"[a-z0-9]{1,8}", value) else (
        f"{value!r} is not a file extension (a-z, 0-9, e.g. mp4)")


def _fps(value: int) -> str | None:
    return None if 1 <= value <= 120 else f"must be 1..120, not {value}"


@attrs.frozen
class WebcamSpec:
    """`webcam:`: the camera beside the printer (camera-streamer, ustreamer, mjpg-streamer)."""

    #: The URL of one JPEG frame; empty: no camera (capture is off whatever the mode).
    snapshot: str = option("", sy.EmptyNone() | sy.Str(), convert=lambda v: v or "",
                           check=_url)
    #: The URL of the MJPEG (or other) stream clients show; a path on this host is allowed.
    stream: str = option("", sy.EmptyNone() | sy.Str(), convert=lambda v: v or "",
                         check=_path_url)
    flip_h: bool = flag(False)
    flip_v: bool = flag(False)
    #: Clockwise degrees the picture is turned (0, 90, 180, 270).
    rotate: int = integer(0, _rotation)
    #: Seconds a snapshot may take before the frame counts as failed (CaptureFailed).
    snapshot_timeout: float = number(5.0)
    #: Whether the snapshot URL's TLS certificate is checked.
    ssl_validation: bool = flag(True)
    #: The stream's aspect ratio as clients show it (OctoPrint's streamRatio).
    ratio: str = option("16:9", sy.Enum(["16:9", "4:3"]))

    @property
    def enabled(self) -> bool:
        return bool(self.snapshot or self.stream)


class TimelapseMode(enum.Enum):
    OFF = "off"
    ZCHANGE = "zchange"
    TIMED = "timed"


@attrs.frozen
class ParkSpec:
    """`timelapse.park:` steady frames: at a layer change the `timelapsePark` script parks the
    head (retract, lift, move, M400), the frame is shot once the printer acknowledged the M400,
    and the exact position, feed rate and extrusion state are restored."""

    enabled: bool = flag(False)
    #: Where the head waits for the frame (mm); y empty: the back of the bed (volume.depth).
    x: float = number(0.0, at_least(0))
    y: float | None = option(None, sy.EmptyNone() | sy.Float(), check=at_least(0))
    #: mm lifted (relative) before the travel to the park position; 0 lifts nothing.
    lift: float = number(0.5, at_least(0))
    #: mm of filament retracted before and pushed back after; 0 retracts nothing.
    retract: float = number(1.0, at_least(0))
    retract_speed: float = number(2400.0)   # mm/min
    travel_speed: float = number(9000.0)    # mm/min, the moves to and from the park position
    z_speed: float = number(600.0)          # mm/min
    #: Park at every Nth layer (the others get no frame).
    every: int = integer(1, at_least(1))
    #: Seconds the print waits at most for the frame before it goes on without one.
    wait: float = number(10.0)


@attrs.frozen
class TimelapseSpec:
    """`timelapse:` when frames are taken and how the movie is made (OctoPrint's timelapse
    settings, plus retention and the steady frames)."""

    mode: TimelapseMode = choice(TimelapseMode.OFF)
    #: timed: seconds between frames.
    interval: float = number(10.0)
    #: zchange: the least seconds between two frames (OctoPrint's minDelay).
    min_delay: float = number(5.0, at_least(0))
    #: zchange: a Z move up and back by this much is a retraction hop, not a layer (0: none).
    retraction_zhop: float = number(0.0, at_least(0))
    #: Seconds of movie after the print: the last frame repeated (zchange) or more frames
    #: shot (timed).
    post_roll: float = number(0.0, at_least(0))
    fps: int = integer(25, _fps)
    bitrate: str = option("10000k", sy.Str(), check=_bitrate)
    threads: int = integer(1, at_least(1))
    #: The movie's container (its file extension): mp4, mkv, avi, webm, gif ...
    format: str = option("mp4", sy.Str(), check=_extension)
    video_codec: str = text("libx264")
    ffmpeg: str = text("ffmpeg")
    #: Render right after the print (in the background, at low priority), or only on request.
    render_after_print: bool = flag(True)
    #: Renders wait while a print runs unless asked for explicitly.
    render_while_printing: bool = flag(False)
    #: The nice value renders run at.
    nice: int = integer(10, at_least(0))
    #: Movies older than this many days are deleted (0: kept whatever their age).
    keep_days: float = number(0.0, at_least(0))
    #: At most this many movies are kept, the newest (0: no limit); unrendered sets too.
    keep_count: int = integer(0, at_least(0))
    park: ParkSpec = subsection(ParkSpec)
