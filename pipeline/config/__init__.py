"""The configuration: YAML text -> frozen specs, every problem a ConfigError with file:line.

Each option is declared once, as a field of its spec class (`options.py` says how; the spec
classes are in `schema.py`, `sections.py` and `mqtt.py`); `reader.py` loads a document and its
drop-in files, `parts.py` reads a document's sections and pipeline, `printers.py` makes the
printers of `printers:` into a ServiceConfig (one HostConfig per printer), with the node
helpers and the `Reporter` interface of `nodes.py` shared by the section readers.

May import: the root modules and `events` (subscriptions name events). No trio, no IO
(`load_config_file` reads one file, `load_service_config_file` also the printers.d folder
beside it). Never imports `stages`: stage schemas are passed in.
"""
