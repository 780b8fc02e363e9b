"""A/B tests: which variant each recipient gets, and which variant won.

Assignment is a pure function of the campaign name and the recipient's ledger
key (SHA-256), so a rerun, a crash or a second worker never moves anyone to
another variant, and recipients added later fall in the same proportions. A
key's hash ``u`` in [0, 1) puts it in the test share when ``u < test_share``,
and then in variant ``floor(u / test_share * n)``: the share split evenly
between the ``n`` variants. Everyone else waits for the winner.

The winner is the variant with the most distinct recipients who opened (or
clicked) per message sent, from the delivery events of its test recipients;
opens a privacy proxy made (Apple Mail's, reported by SparkPost and Brevo as
``proxy_open``, by SendGrid as ``sg_machine_open``) are not counted, as the
store's query says. A tie goes to the earlier variant.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from stampcli.config import Campaign
from stampcli.config.schedule import ABConfig
from stampcli.errors import ConfigError

_SCALE = float(1 << 64)


def position(campaign: str, key: str) -> float:
    """The recipient's fixed place in [0, 1) for this campaign."""
    digest = hashlib.sha256(f"{campaign}\n{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def variant_of(ab: ABConfig, campaign: str, key: str) -> int | None:
    """The variant a test recipient gets, or None for the rest (who get the winner)."""
    u = position(campaign, key)
    if u >= ab.test_share:
        return None
    return min(int(u / ab.test_share * len(ab.variants)), len(ab.variants) - 1)


def variant_campaign(campaign: Campaign, index: int) -> Campaign:
    """The campaign as variant ``index`` sends it: its subject, template and/or From."""
    if campaign.ab is None:
        raise ConfigError(f"{campaign.path}: the campaign has no ab: variants")
    variant = campaign.ab.variants[index]
    update: dict[str, Any] = {}
    if variant.subject is not None:
        update["subject"] = variant.subject
    if variant.template is not None:
        update["template"] = variant.template
    if variant.from_ is not None:
        update["from_"] = variant.from_
    return campaign.model_copy(update=update)


@dataclass(frozen=True, slots=True)
class VariantFigures:
    """How one variant did in the test."""

    name: str
    sent: int
    opened: int  # distinct recipients, proxy opens left out
    clicked: int

    def rate(self, metric: str) -> float:
        hits = self.clicked if metric == "clicks" else self.opened
        return hits / self.sent if self.sent else 0.0

    def as_dict(self, metric: str) -> dict[str, Any]:
        return {
            "variant": self.name,
            "sent": self.sent,
            "opened": self.opened,
            "clicked": self.clicked,
            "rate": round(self.rate(metric), 4),
        }


def figures(
    ab: ABConfig,
    campaign: str,
    sent_keys: Iterable[str],
    engaged: Iterable[tuple[str, str]],
) -> list[VariantFigures]:
    """Per variant: test recipients sent, and how many of them opened and clicked.

    ``engaged``: (ledger key, ``opened`` | ``clicked``) pairs, each pair once.
    """
    n = len(ab.variants)
    sent, opened, clicked = [0] * n, [0] * n, [0] * n
    for key in sent_keys:
        v = variant_of(ab, campaign, key)
        if v is not None:
            sent[v] += 1
    for key, kind in engaged:
        v = variant_of(ab, campaign, key)
        if v is None:
            continue
        if kind == "opened":
            opened[v] += 1
        elif kind == "clicked":
            clicked[v] += 1
    return [VariantFigures(ab.label(i), sent[i], opened[i], clicked[i]) for i in range(n)]


def winner(ab: ABConfig, found: list[VariantFigures]) -> int:
    """The index of the best variant by ``ab.metric``; the earlier one on a tie."""
    best = 0
    for i, fig in enumerate(found):
        if fig.rate(ab.metric) > found[best].rate(ab.metric):
            best = i
    return best


def variant_index(ab: ABConfig, text: str) -> int:
    """A variant named on the command line (its name, its letter, or 1-based number)."""
    wanted = text.strip()
    for i in range(len(ab.variants)):
        if wanted.lower() == ab.label(i).lower():
            return i
    if wanted.isdigit() and 1 <= int(wanted) <= len(ab.variants):
        return int(wanted) - 1
    names = ", ".join(ab.label(i) for i in range(len(ab.variants)))
    raise ConfigError(f"no variant {text!r}; this campaign's variants are {names}")
