"""The printer's SD card over OctoPrint's API (endpoints.py): `/api/printer/sd`, and
`/api/files/sdcard` beside the local files (`/api/files` lists both).

May import: what app/http may (the card only through the printer's control, `control.sd`).
"""
