"""Printable files: local storage (uploads, folders, moves), its name and path rules, the
metadata index with its background analysis queue, and the pure G-code analysis.

May import: the root modules, `events`, `config` and `hooks`. Does file IO; the analysis queue
is a trio task.
"""
