"""Timelapse, the pure part: frame and movie names, when a frame is due (zchange with its
retraction hops and least delay, timed), the post roll, the ffmpeg command line, which old
movies and frame sets go, the API's listings, and the capture and extension hook contracts.

May import: the root modules, `events`, `config` and `hooks` (the session imports park.py).
No trio, no IO: the camera
package (pipeline/camera/) fetches, writes and renders.
"""
