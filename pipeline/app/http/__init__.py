"""The HTTP API (Starlette on hypercorn's trio worker): the app with its middleware, and the
endpoints by area.

May import: everything `app` may.
"""
