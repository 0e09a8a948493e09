"""The edges: the service above the printers (service.py: the printers by name, reload, keys,
the HTTP apps and MQTT), each printer's own part (printers/: its control surface, session,
nursery, autoconnect, crash journal), the main port's dispatcher to the printers' apps
(dispatch.py), `printpipe serve` (serve.py; its start checks: startup.py), config reload
(reload.py), API keys (keys.py), system commands (system.py), and the CLI (cli/), the HTTP API
(http/) and the MQTT bridge (mqtt/).

May import: every layer and `stages`. Nothing imports `app`.
"""
