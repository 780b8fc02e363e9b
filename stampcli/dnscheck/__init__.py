"""The DNS pre-flight of ``stamp check --dns``: lookups, SPF, sender facts, the checks.

``lookup`` asks (with time limits, never raising for DNS failures), ``spf``
walks SPF records, ``senders`` knows what each provider needs, ``preflight``
turns it all into findings with a severity and a fix.
"""
