"""The timelapse folders of one printer, in its state folder: `timelapse/` holds the movies,
`timelapse/tmp/` the frames of sets not rendered (yet). Listing, deleting and the retention
sweep; blocking file calls, run in a thread by the callers.
"""

from __future__ import annotations

import logging
import os
import shutil
import time

from pipeline.timelapse import names

log = logging.getLogger("printpipe.timelapse")


class Store:
    def __init__(self, state: str) -> None:
        self.movies = os.path.join(state, "timelapse")
        self.frames = os.path.join(self.movies, "tmp")

    def make(self) -> None:
        os.makedirs(self.frames, exist_ok=True)

    def frame_path(self, prefix: str, n: int) -> str:
        return os.path.join(self.frames, names.frame_name(prefix, n))

    def _scan(self, folder: str) -> list[tuple[str, int, float]]:
        try:
            with os.scandir(folder) as it:
                entries = [(e.name, e.stat()) for e in it if e.is_file()]
        except FileNotFoundError:
            return []
        return [(name, st.st_size, st.st_mtime) for name, st in entries]

    def movie_list(self, extensions: tuple[str, ...]) -> list[names.Movie]:
        wanted = {f".{e}" for e in extensions}
        found = [names.Movie(n, size, mtime) for n, size, mtime in self._scan(self.movies)
                 if os.path.splitext(n)[1].lower() in wanted]
        return sorted(found, key=lambda m: -m.mtime)

    def frame_sets(self) -> list[names.FrameSet]:
        return names.frame_sets(self._scan(self.frames))

    def frame_count(self, prefix: str) -> int:
        return next((s.frames for s in self.frame_sets() if s.prefix == prefix), 0)

    def movie_path(self, name: str) -> str | None:
        """The movie's path when `name` is a plain file name of an existing movie."""
        if not names.safe_name(name):
            return None
        path = os.path.join(self.movies, name)
        return path if os.path.isfile(path) else None

    def delete_movie(self, name: str) -> bool:
        path = self.movie_path(name)
        if path is None:
            return False
        os.unlink(path)
        return True

    def delete_frames(self, prefix: str) -> int:
        """Delete a frame set; how many frames went."""
        n = 0
        for name, _, _ in self._scan(self.frames):
            found = names.frame_of(name)
            if found is not None and found[0] == prefix:
                os.unlink(os.path.join(self.frames, name))
                n += 1
        return n

    def repeat_frame(self, prefix: str, last: int, count: int) -> int:
        """Copy frame `last` `count` times after it (a zchange post roll); the new last."""
        src = self.frame_path(prefix, last)
        for i in range(1, count + 1):
            shutil.copyfile(src, self.frame_path(prefix, last + i))
        return last + count

    def sweep(self, keep_days: float, keep_count: int, *, busy: frozenset[str]) -> list[str]:
        """Retention: old or surplus movies and frame sets go (not the sets in `busy`)."""
        if not keep_days and not keep_count:
            return []
        now = time.time()
        movies = [(m.name, m.mtime) for m in self.movie_list(names.MOVIE_EXTENSIONS)]
        gone = [name for name in names.expired(movies, now=now, keep_days=keep_days,
                                               keep_count=keep_count)
                if self.delete_movie(name)]
        sets = [(s.prefix, s.mtime) for s in self.frame_sets() if s.prefix not in busy]
        for prefix in names.expired(sets, now=now, keep_days=keep_days, keep_count=keep_count):
            self.delete_frames(prefix)
            gone.append(prefix)
        if gone:
            log.info("timelapse retention removed %s", ", ".join(gone))
        return gone
