"""The configuration: YAML text -> frozen specs, every problem a ConfigError with file:line.

Each option is declared once, as a field of its spec class (`options.py` says how; the spec
classes are in `schema.py`, `sections.py` and `mqtt.py`); `reader.py` loads a document, with
the node helpers and the `Reporter` interface of `nodes.py` shared by the section readers.

May import: the root modules and `events` (subscriptions name events). No trio, no IO
(`load_config_file` reads one file). Never imports `stages`: stage schemas are passed in.
"""
