from stampcli.clock import *  # noqa: F403  # removed at merge: moved to stampcli/clock.py
