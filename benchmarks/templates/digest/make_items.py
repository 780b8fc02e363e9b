"""Writes campaign.yml's 50 digest items (run once; the output is committed).

python benchmarks/templates/digest/make_items.py
"""

from __future__ import annotations

import random
from pathlib import Path

import yaml

SECTIONS = ["Engineering", "Security", "Data & AI", "Product", "Careers & culture"]
SUBJECTS = [
    "Postgres", "Kubernetes", "Rust", "Python 3.14", "WebAssembly", "SQLite", "Kafka", "OAuth",
    "TLS certificates", "feature flags", "on-call", "code review", "vector search", "CDNs",
    "design systems", "monorepos", "CI caches", "passkeys", "DNS", "observability",
]  # fmt: skip
PATTERNS = [
    "How we cut our {s} bill by {n}%",
    "What nobody tells you about {s}",
    "{s} in production: {n} lessons from a year of incidents",
    "A field guide to {s} for small teams",
    "Why we moved off {s} (and back again)",
    "The hidden cost of {s}",
    "{s}, explained with {n} diagrams",
    "Postmortem: the {s} outage of 14 November",
]  # fmt: skip
SOURCES = [
    "engineering.example", "blog.acme.example", "lwn.example", "research.example.org",
    "newsroom.example", "medium.example", "github.example/blog",
]  # fmt: skip
AUTHORS = [
    "Priya Raman", "Tomás Ortega", "Hanne Lindqvist", "Chidi Okafor", "Mei Chen",
    "Ravi Kulkarni", "Élodie Marchand", "Jonas Weiß", "Sarah O'Connell", "Kwame Mensah",
]  # fmt: skip
TAGS = [
    "api", "security", "design", "events", "integrations", "release notes",
    "case studies", "community", "pricing", "webinars", "tips & tricks", "product updates",
]  # fmt: skip
SENTENCES = [
    "The team measured every step before changing anything, and the biggest win came from "
    "the part nobody suspected.",
    "It starts with a graph that looked wrong for months and ends with a one-line fix.",
    "Includes the scripts they used, so you can run the same analysis on your own systems.",
    "A careful write-up with numbers, trade-offs and the mistakes they made along the way.",
    "The author argues that most teams adopt it too early, and explains what to do instead.",
    "Worth reading for the section on rollbacks alone.",
    "There is a good discussion in the comments about where this approach breaks down.",
    "Short, opinionated and practical: three changes you can make this week.",
]  # fmt: skip


def items(seed: int = 48) -> list[dict[str, object]]:
    rng = random.Random(seed)
    out: list[dict[str, object]] = []
    for i in range(50):
        s = rng.choice(SUBJECTS)
        title = rng.choice(PATTERNS).format(s=s, n=rng.randint(3, 90))
        slug = "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")
        out.append(
            {
                "id": 9100 + i,
                "section": SECTIONS[i * len(SECTIONS) // 50],
                "title": title,
                "url": f"https://{rng.choice(SOURCES)}/posts/{slug[:60]}",
                "source": rng.choice(SOURCES),
                "author": rng.choice(AUTHORS),
                "minutes": rng.randint(3, 25),
                "comments": rng.choice([0, 0, 3, 12, 48, 131]),
                "tags": rng.sample(TAGS, rng.randint(1, 3)),
                "summary": " ".join(rng.sample(SENTENCES, 4)),
            }
        )
    return out


if __name__ == "__main__":
    path = Path(__file__).with_name("campaign.yml")
    head = path.read_text(encoding="utf-8").split("variables:")[0]
    doc = yaml.safe_dump(
        {"variables": {"week": 48, "items": items()}},
        sort_keys=False,
        allow_unicode=True,
        width=100,
    )
    path.write_text(head + doc, encoding="utf-8")
