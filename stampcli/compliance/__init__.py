"""Compliance: who must not be mailed, and when a campaign must stop.

* :mod:`.policy` refuses bulk campaigns without a one-click unsubscribe URL.
* :mod:`.tokens` signs and verifies the one-click unsubscribe tokens.
* :mod:`.autostop` pauses a campaign whose bounces or complaints climb too high.
* :mod:`.exports` reads suppression exports of SendGrid, Mailgun, Postmark, SES,
  Mailchimp and plain address lists, and writes our own as CSV or XLSX.
* :mod:`.pull` fetches suppressions from every configured provider's API.
* :mod:`.unsubscribe_server` receives RFC 8058 one-click unsubscribes.

The suppression table itself lives in :mod:`stampcli.store.suppressions`.
"""
