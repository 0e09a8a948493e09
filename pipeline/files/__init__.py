"""Printable files: local storage (uploads, folders, moves), its name and path rules, the
metadata index with its background analysis queue, the pure G-code analysis, and the print
journal's file and writer task.

May import: the root modules, `events`, `config` and `hooks`. Does file IO; the analysis queue
is a trio task.
"""
