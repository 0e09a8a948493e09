"""The HTTP API (Starlette on hypercorn's HTTP protocol): the server, the app with its
middleware, and the endpoints by area.

May import: everything `app` may.
"""
