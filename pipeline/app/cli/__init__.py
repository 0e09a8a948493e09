"""The `printpipe` command line: one module per command group.

May import: everything `app` may.
"""
