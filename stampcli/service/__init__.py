"""Use cases: what ``stamp`` commands, the HTTP server and workers call.

Each function takes a loaded campaign or list and an open store, never prints,
returns a dataclass with ``as_dict()``, and raises ``StampError`` subclasses.
"""
