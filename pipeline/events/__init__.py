"""Event names (the catalogue with payload keys) and placeholder substitution, pure.

May import: the root modules (errors, gcode, phases). No trio, no IO.
"""
