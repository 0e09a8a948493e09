"""Logging for every command: one line per record on stderr.

Under systemd (JOURNAL_STREAM is set when stderr goes to the journal) each line starts with
its syslog priority, `<3>` for an error, `<4>` a warning, `<6>` info, `<7>` debug, which
journald reads and strips (so `journalctl -u printpipe -p err` shows the errors); the journal
adds the time and the unit's SyslogIdentifier. On a terminal a line starts with the level.

Warnings and errors are always logged; so are, at info, what subscriptions ran and, for
`printpipe serve`, the few more lines worth keeping on an SD card: the prints (started, done,
failed, cancelled) and the printer connection. `-v` logs everything (debug).
"""

from __future__ import annotations

import logging
import os

#: Python levels to syslog priorities (sd-daemon(3)).
PRIORITIES = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
              logging.DEBUG: 7}
#: Loggers whose info lines are always kept (by `printpipe serve`: SERVICE_INFO too).
ALWAYS_INFO = ("printpipe.subscriptions",)
SERVICE_INFO = ("printpipe.print", "printpipe.connect")


class JournalFormatter(logging.Formatter):
    """`<priority>name: message`; a traceback's lines are joined so it stays one record."""

    def format(self, record: logging.LogRecord) -> str:
        priority = PRIORITIES.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        text = super().format(record)
        return f"<{priority}>" + text.replace("\n", "\n" + f"<{priority}>")


def setup_logging(*, verbose: bool = False, service: bool = False, force: bool = False) -> None:
    """Set up the root logger, as logging.basicConfig does: not when it has handlers already
    (a test harness's), unless `force`."""
    root = logging.getLogger()
    if root.handlers and not force:
        return
    handler = logging.StreamHandler()
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    if not verbose:
        for name in ALWAYS_INFO + SERVICE_INFO * service:
            logging.getLogger(name).setLevel(logging.INFO)
