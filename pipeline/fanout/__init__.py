"""Event fan-out (trio): the bus with bounded per-subscriber queues, and the runner of the
config's event subscriptions (G-code through the pipeline, programs as subprocesses).

May import: the root modules, `events` and `config`.
"""
