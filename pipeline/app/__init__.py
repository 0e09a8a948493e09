"""The edges: the service that wires everything in one nursery, the control surface that
HTTP and CLI drive the printer through, `printpipe serve` (its start checks: startup.py; the
loop that keeps the printer connected: autoconnect.py), API keys, the CLI and the HTTP API.

May import: every layer and `stages`. Nothing imports `app`.
"""
