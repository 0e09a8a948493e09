"""printpipe's built-in virtual printer: a sans-IO Marlin 2 model (`firmware.VirtualFirmware`
with its commands, thermal model, waits and faults; its SD card in `sd/`, a subpackage as
this one is at 11 modules), and `pair.Pair`, which joins a host core to the model in memory
with a manual clock for tests and tools. Its pty server lives in
`pipeline.link.virtual`.

May import: the root modules, `config` and `session` (for the Pair). No trio, no IO.
"""
