"""The one root exception of stamp, its subclasses, and the exit codes they map to.

Library code raises these; only the CLI turns them into a message and an exit
code. Each subclass also derives from the built-in exception it most resembles,
so callers that know nothing of stamp can still catch ``ValueError`` or ``OSError``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, documented in README.md ("Exit codes")."""

    OK = 0  # complete: every recipient has a final state
    PERMANENT_FAILURES = 1  # complete, but some recipients failed permanently
    BAD_INPUT = 2  # bad campaign file, list, template, option or usage
    RESUMABLE = 3  # stopped with work left (quota, Ctrl-C, --limit, deferred rows)
    ALL_PROVIDERS_DOWN = 4  # every provider is down or refuses us; the rest stays pending
    LOCKED = 5  # another run holds this campaign's lock
    PAUSED = 6  # the campaign is paused (bounce/complaint threshold) until resumed
    STORE = 7  # the SQLite store cannot be read or written (disk full, read-only, corrupt)
    NOT_DUE = 8  # scheduled: nothing (more) is due now; the output says when the next is
    INTERRUPTED = 130  # stopped hard by a second Ctrl-C; in-flight rows are `unknown`


class StampError(Exception):
    """Root of every error stamp raises on purpose.

    ``str(error)`` is a complete one-paragraph message for a person: it names
    the file, row or key at fault and never contains a secret.
    """

    exit_code: ExitCode = ExitCode.BAD_INPUT


class ConfigError(StampError, ValueError):
    """campaign.yml is wrong: unknown key, wrong type, bad provider URL, missing file or env var."""


class InputError(StampError, ValueError):
    """A subscriber list or other input file cannot be used as given."""


class TemplateError(StampError, ValueError):
    """A template does not compile, or cannot be rendered for a recipient."""


class RecipientError(StampError, ValueError):
    """One recipient cannot get a message (header injection, missing variable, bad address).

    The run goes on: the engine records the reason against that recipient only.
    """


class StoreError(StampError, OSError):
    """The SQLite store failed: full disk, read-only file, corruption, schema too new."""

    exit_code = ExitCode.STORE


class LockedError(StampError, RuntimeError):
    """Another live run holds the campaign's lock."""

    exit_code = ExitCode.LOCKED


class ContentChangedError(StampError, RuntimeError):
    """The campaign's content changed since it started sending; resuming needs a flag."""


class CampaignPausedError(StampError, RuntimeError):
    """The campaign paused itself (bounces or complaints over the threshold)."""

    exit_code = ExitCode.PAUSED


class ProviderError(StampError, ConnectionError):
    """A provider could not be set up or checked (bad credentials, unreachable)."""

    exit_code = ExitCode.ALL_PROVIDERS_DOWN
