"""stamp: a command-line bulk newsletter sender (package ``stampcli``)."""

from __future__ import annotations

__version__ = "0.1.0"
