"""The host core, sans-IO: one printer session's queues, print jobs, command rules,
reactions to engine events, tracked printer state, printer states and their transition table,
the crash journal's content, and the facade handlers get; `sd/` holds the printer's SD card
(its own subpackage: this one is at 12 modules).

May import: the root modules, `events`, `config`, `protocol`, `hooks` and `timelapse` (the
steady frames' park block). No trio, no IO, no
clock reads (a clock callable is handed in).
"""
