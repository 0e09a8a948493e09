"""A printer's camera, the IO part: snapshots fetched with httpx under a timeout and written to
the timelapse temp folder (snapshot.py), the recorder that shoots frames while a print runs
(on Z changes, on a timer, or when the head is parked for a steady frame) and its post roll
(recorder.py), the ffmpeg renders run one at a time at low priority (render.py), and the
timelapse folders: listings, deletes and retention (store.py). It runs in the printer's own
nursery and never blocks the serial link: a slow camera costs frames, never a line.

May import: the root modules, `events`, `config`, `hooks`, `timelapse` and `fanout`.
"""
