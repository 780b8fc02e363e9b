"""Subscriber rows for the template corpus, as a CRM export gives them.

Every corpus template's ``data.py`` starts from :func:`person` and adds its own
columns. Values are text, as they come from a CSV file: names from many
countries (accents, ß, Ł, CJK, apostrophes, hyphens), plans, ISO countries,
languages, ``;``-separated interest lists, and some empty cells, as real
exports have.
"""

from __future__ import annotations

import random
import unicodedata

FIRST = [
    "Anna", "Jürgen", "Zoë", "Søren", "Łukasz", "Çağla", "José María", "Anne-Sophie",
    "Siobhán", "François", "Björn", "Nguyễn", "Marta", "Ólafur", "João", "Chloé", "Aiko",
    "Priya", "Mohammed", "Ewa", "Héctor", "Kateřina", "Sven", "Daniel", "Grace", "Liam",
    "Renée", "Ünal", "Ines", "Maximilian", "Dörte", "Zoltán", "美咲", "Олег", "D'Arcy",
]  # fmt: skip
LAST = [
    "Schmidt", "Müller", "O'Brien", "Dubois", "García López", "Nowak", "Øster", "Yılmaz",
    "Smith", "van der Berg", "Kowalczyk", "Nakamura", "Fernández", "Strauß", "Dvořák",
    "MacLeod", "Åkesson", "Rossi", "Silva", "Patel", "Nguyen", "Lefèvre", "佐藤", "Иванов",
]  # fmt: skip
COMPANY = [
    "Schmidt & Partner GmbH", "Atelier Dubois", "Smith Consulting LLC", "Müller Maschinenbau",
    "Nordlicht AB", "Café Olé S.L.", "Kowalski i Synowie", "Tanaka Design K.K.", "", "",
    "O'Neill Bros.", "Zeta <Labs>", "Acme Widgets, Inc.",
]  # fmt: skip
PLANS = ["free", "free", "free", "pro", "pro", "team", "enterprise", ""]
COUNTRIES = ["DE", "DE", "US", "US", "GB", "FR", "ES", "BR", "JP", "PL", "IN", "AT", "CH", ""]
LANGUAGE_OF = {
    "DE": "de", "AT": "de", "CH": "de", "FR": "fr", "ES": "es", "BR": "pt", "PL": "pl",
    "JP": "ja", "US": "en", "GB": "en", "IN": "en", "": "",
}  # fmt: skip
INTERESTS = [
    "product updates", "webinars", "case studies", "api", "security", "pricing",
    "events", "design", "integrations", "tips & tricks", "release notes", "community",
]  # fmt: skip
DOMAINS = ["example.com", "example.org", "example.net", "example.de"]


def _ascii(text: str) -> str:
    """An address-safe form of a name: accents dropped, ASCII letters and digits only."""
    plain = unicodedata.normalize("NFKD", text.lower())
    out = "".join(c for c in plain if c.isascii() and c.isalnum())
    return out or "user"


def person(rng: random.Random, i: int) -> dict[str, str]:
    """One subscriber row; ``i`` keeps the addresses unique."""
    first = rng.choice(FIRST) if rng.random() > 0.06 else ""
    last = rng.choice(LAST) if rng.random() > 0.04 else ""
    country = rng.choice(COUNTRIES)
    lang = LANGUAGE_OF[country] if rng.random() > 0.1 else rng.choice(["en", "de", "fr", ""])
    k = rng.choice([0, 0, 1, 2, 2, 3, 4, 5])
    interests = ";".join(rng.sample(INTERESTS, k))
    if interests and rng.random() < 0.1:
        interests = interests.replace(";", "; ")  # hand-edited cells have spaces
    email = f"{_ascii(first)}.{_ascii(last)}.{i}@{rng.choice(DOMAINS)}"
    year = rng.randint(2016, 2026)
    return {
        "email": email,
        "first_name": first,
        "last_name": last,
        "company": rng.choice(COMPANY),
        "plan": rng.choice(PLANS),
        "country": country,
        "language": lang,
        "interests": interests,
        "signup_date": f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        if rng.random() > 0.05
        else "",
    }
