"""One printer of the service: its control surface (control.py: what HTTP, CLI and MQTT drive
one printer through), its session's lifecycle (session.py), the snapshots it answers with
(status.py, snapshot.py), its own nursery with everything that is its own (runtime.py: bus,
subscriptions, journal, history, print log), the loop that keeps it connected (autoconnect.py)
and the crash journal's follower and resume (recovery.py).

May import: every layer below app, `stages`, and app's shared modules (paths, reload,
supervise, system, keys). Nothing outside app imports it.
"""
