"""The MQTT bridge: the trio driver of paho-mqtt (client.py), what is published as values
(topics.py: OctoPrint-MQTT's topics and payloads; discovery.py: Home Assistant discovery),
commands in (commands.py), one printer's bus subscriber that ties them together (bridge.py)
and the service's one connection every printer's bridge shares (hub.py).

May import: everything `app` may (it drives the printer through `app.control.PrinterControl`), and
paho-mqtt. Only `app.service` imports it.
"""
