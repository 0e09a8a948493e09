"""The host side of the printer's SD card, sans-IO: Marlin's SD replies (`replies`), the card's
state, list and SD prints as the control surface drives them (`card`, `job`), and uploads to
the card in text mode or Marlin's binary file transfer (`upload`, `binary`).

A subpackage of the session because session/ holds 12 modules already; it is the session's
part for the card and is wired by the session core like the others.
May import: the root modules, `events`, `config`, `protocol`, `hooks` and the session's parts
(never `pipeline.session.core`). No trio, no IO, no clock reads.
"""
