"""The edges: the service that wires everything in one nursery (service.py), the control
surface that HTTP, CLI and MQTT drive the printer through (control.py) and the snapshots it
answers with (status.py), `printpipe serve` (serve.py; its start checks: startup.py; the loop
that keeps the printer connected: autoconnect.py), the crash journal's follower and resume
(recovery.py), config reload (reload.py), API keys (keys.py), system commands (system.py),
and the CLI (cli/), the HTTP API (http/) and the MQTT bridge (mqtt/).

May import: every layer and `stages`. Nothing imports `app`.
"""
