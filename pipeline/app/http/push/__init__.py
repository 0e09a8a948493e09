"""The push socket that mobile apps listen on: `sockjs.py` (the websocket and its messages) and
`login.py` (the passive login whose session authenticates it).

May import: everything `app` may, and the modules of `app.http`.
"""
