"""The camera's HTTP endpoints for one printer: its timelapse movies and frame sets
(timelapse.py), and /api/settings' `webcam` as OctoPrint reports it.

May import: what app/http may (the camera package through the printer's control).
"""
