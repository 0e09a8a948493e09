"""The sans-IO serial protocol engine (h11's model): bytes in, events and bytes out.

Line numbers, checksums, resend history, the ok window, deadlines and timeout rules, reply
classification and the firmware report. May import: the root modules and `config`. No trio,
no IO, no clock reads (every call that needs time takes `now`).
"""
