"""The renderer of an A/B campaign: each recipient's message from its variant's campaign.

Test recipients get their own variant (:func:`stampcli.schedule.ab.variant_of`);
the rest get the winner once there is one. The content hash covers every
variant, so the content guard neither trips between the test and the winner's
send nor misses a change to any variant's template or subject.
"""

from __future__ import annotations

import hashlib
from typing import Any

from stampcli.config import Campaign
from stampcli.errors import RecipientError
from stampcli.render.message import Message
from stampcli.render.renderer import Renderer
from stampcli.schedule.ab import variant_campaign, variant_of


class VariantRenderer:
    """``render(key, email, fields)`` with the recipient's variant (``RendererLike``)."""

    def __init__(self, campaign: Campaign, winner: int | None = None) -> None:
        if campaign.ab is None:
            raise ValueError("VariantRenderer needs a campaign with ab:")
        self.campaign = campaign
        self.ab = campaign.ab
        self.winner = winner
        self.renderers = [
            Renderer(variant_campaign(campaign, i)) for i in range(len(self.ab.variants))
        ]
        joined = "\n".join(r.content_hash for r in self.renderers)
        self.content_hash = hashlib.sha256(joined.encode()).hexdigest()

    def variant(self, key: str) -> int | None:
        """The variant ``key`` gets now (None: not before the winner is chosen)."""
        mine = variant_of(self.ab, self.campaign.name, key)
        return self.winner if mine is None else mine

    def render(self, key: str, email: str, fields: dict[str, Any]) -> Message:
        index = self.variant(key)
        if index is None:  # the gate holds these rows back; a row here is a bug upstream
            raise RecipientError(f"{email}: no A/B winner chosen yet")
        return self.renderers[index].render(key, email, fields)
