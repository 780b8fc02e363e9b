"""Which open and click hits were made by machines, not people (own tracking).

A hit is a machine's when any of these holds (the first that does is its reason):

- the request is a ``HEAD`` (link checkers and scanners probe with it; mail
  clients and browsers never do);
- it has no ``User-Agent``, or one of a known scanner, prefetcher or bot
  (:data:`SCANNER_AGENTS`: Barracuda, Proofpoint, Mimecast, Microsoft's Safe Links
  and preview fetchers, Google's safety crawler and Yahoo's, command-line HTTP
  clients, headless browsers, anything calling itself bot, crawler or spider);
- it is an open from Apple Mail Privacy Protection: Apple's proxies fetch every
  image of a message on delivery, from Apple's network 17.0.0.0/8, with the bare
  user agent ``Mozilla/5.0``;
- it came within :data:`PREFETCH_SECONDS` of the message being made (the token's
  issue time): prefetchers and security gateways fetch on delivery, people do not
  open and click that fast;
- it is a click of a recipient who clicked :data:`BURST_LINKS` distinct links of
  the message within :data:`BURST_SECONDS`: a scanner following every link
  (the clicks of the burst before this one were counted as they came).

Gmail's and Yahoo's image proxies (``GoogleImageProxy``, ``YahooMailProxy``) fetch
when the message is opened, so their opens are people's, unless they come within
the prefetch window.
"""

from __future__ import annotations

import ipaddress
import re
from collections import OrderedDict

PREFETCH_SECONDS = 10.0
BURST_LINKS = 3
BURST_SECONDS = 5.0
MAX_TRACKED = 10_000  # recipients whose recent clicks are remembered (in memory)

SCANNER_AGENTS = re.compile(
    r"barracuda|proofpoint|mimecast|safelinks|microsoft office protocol discovery"
    r"|ms-office|skypeuripreview|google-safety|googlebot|yahoo! slurp"
    r"|symantec|trend ?micro|forcepoint|fireeye|sophos|cisco|ironport|zscaler|paloalto"
    r"|checkpoint|headlesschrome|phantomjs|python-requests|python-urllib|aiohttp|httpx"
    r"|curl/|wget/|go-http-client|java/|okhttp|libwww-perl|bot\b|crawler|spider|preview",
    re.IGNORECASE,
)
_APPLE = ipaddress.ip_network("17.0.0.0/8")


def _apple(ip: str | None) -> bool:
    try:
        return ip is not None and ipaddress.ip_address(ip) in _APPLE
    except ValueError:
        return False


class Classifier:
    """Says why a hit is a machine's (None: a person's); remembers recent clicks."""

    def __init__(self) -> None:
        self._clicks: OrderedDict[tuple[str, str], list[tuple[float, str]]] = OrderedDict()

    def machine(
        self,
        kind: str,
        *,
        method: str,
        user_agent: str | None,
        ip: str | None,
        issued: float,
        now: float,
        campaign: str,
        key: str,
        url: str | None = None,
    ) -> str | None:
        agent = (user_agent or "").strip()
        burst = self._burst(campaign, key, url, now) if kind == "click" else False
        if method == "HEAD":
            return "HEAD request (a link checker)"
        if not agent:
            return "no user agent"
        found = SCANNER_AGENTS.search(agent)
        if found:
            return f"scanner or prefetcher user agent ({found.group(0).strip()})"
        if kind == "open" and (_apple(ip) or agent == "Mozilla/5.0"):
            return "Apple Mail Privacy Protection"
        if 0 <= now - issued < PREFETCH_SECONDS:
            return f"within {PREFETCH_SECONDS:g} s of sending (prefetch)"
        if burst:
            return f"{BURST_LINKS} or more links within {BURST_SECONDS:g} s (a link scanner)"
        return None

    def _burst(self, campaign: str, key: str, url: str | None, now: float) -> bool:
        who = (campaign, key)
        recent = [(t, u) for t, u in self._clicks.pop(who, []) if now - t < BURST_SECONDS]
        recent.append((now, url or ""))
        self._clicks[who] = recent[-BURST_LINKS * 4 :]
        while len(self._clicks) > MAX_TRACKED:
            self._clicks.popitem(last=False)
        return len({u for _, u in recent}) >= BURST_LINKS
