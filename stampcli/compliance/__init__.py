"""Compliance: policy with no I/O of its own: who must not be mailed, and when a campaign must stop.

* :mod:`.policy` refuses bulk campaigns without a one-click unsubscribe URL.
* :mod:`.tokens` signs and verifies the one-click unsubscribe tokens.
* :mod:`.autostop` pauses a campaign whose bounces or complaints climb too high.

What used to live here moved to where it belongs: the suppression pulls and
export readers to each provider's module (:mod:`stampcli.providers.pull`,
:mod:`stampcli.providers.suppression_files`), the one-click receiver to
``stamp serve`` (:mod:`stampcli.server.unsubscribe`), time parsing to
:mod:`stampcli.times`. The suppression table lives in :mod:`stampcli.store.suppressions`.
"""
