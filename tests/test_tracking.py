"""Which providers honour the campaign's tracking switches, and what is said where they do not."""

from __future__ import annotations

import pytest

from stampcli.config import ProviderConfig, TrackingConfig
from stampcli.providers import SCHEMES, adapter_class, tracking_warning

# Every scheme, on purpose: a new adapter must say whether it honours the switches.
HONOURS = {
    "smtp": False,
    "smtps": False,
    "outbox": False,
    "sendgrid": True,
    "mailgun": True,
    "ses": False,
    "postmark": True,
    "resend": False,
    "mailjet": True,
    "sparkpost": True,
    "mandrill": True,
    "brevo": False,
}


def test_every_adapter_says_whether_it_honours_tracking() -> None:
    assert {scheme: adapter_class(scheme).tracking_switch for scheme in SCHEMES} == HONOURS


@pytest.mark.parametrize("scheme", sorted(HONOURS))
def test_unset_tracking_is_never_a_warning(scheme: str) -> None:
    url = {"outbox": "outbox://out", "ses": "ses://eu-west-1", "mailgun": "mailgun://k@mg.x"}
    config = ProviderConfig(url=url.get(scheme, f"{scheme}://key@host.example"))
    assert tracking_warning(config, TrackingConfig()) is None
    warned = tracking_warning(config, TrackingConfig(opens=True)) is not None
    assert warned is not HONOURS[scheme]


def test_ses_names_the_configuration_set_that_decides() -> None:
    tracking = TrackingConfig(clicks=False)
    with_set = ProviderConfig(url="ses://eu-west-1?configuration_set=news-events")
    assert tracking_warning(with_set, tracking) == (
        "tracking.clicks is set but ses has no per-message tracking switch; "
        "the configuration set 'news-events' decides"
    )
    without = tracking_warning(ProviderConfig(url="ses://eu-west-1"), tracking)
    assert without is not None and "no ?configuration_set=NAME is given" in without


def test_a_named_provider_is_named_with_its_scheme() -> None:
    config = ProviderConfig(url="brevo://xkeysib-1", name="fallback")
    assert tracking_warning(config, TrackingConfig(opens=True, clicks=True)) == (
        "tracking.opens and tracking.clicks are set but fallback (brevo://) has no "
        "per-message tracking switch; the account's settings apply"
    )


def test_the_outbox_is_only_warned_about_when_asked_to_track() -> None:
    outbox = ProviderConfig(url="outbox://out")
    assert tracking_warning(outbox, TrackingConfig(opens=False, clicks=False)) is None
    warning = tracking_warning(outbox, TrackingConfig(opens=False, clicks=True))
    assert warning is not None and warning.startswith("tracking.clicks is set but outbox")
