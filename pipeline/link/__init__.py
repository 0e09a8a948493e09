"""The serial side (trio): the transport over trio-serial, the link tasks that move bytes
between the port and the host core, the printer session (`open_printer`) and the pty server
of the virtual printer.

May import: every layer below `app` except `files` and `fanout`.
"""
