"""When a campaign's messages may go out: schedules, send windows, recipient time zones, A/B tests.

Pure logic over an injected clock (:mod:`stampcli.clock`): ``zones`` turns zone
names and UTC offsets into ``tzinfo``; ``calendar`` says whether an instant is
due for a schedule and window in one zone, and when that changes; ``gate``
applies it to a run's ledger rows; ``ab`` assigns A/B variants and picks the
winner. The run (``stampcli.delivery.run``) asks the gate; the store keeps the
state (``store.schedules``); the CLI only draws it.
"""
