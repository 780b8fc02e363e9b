"""Every example campaign's messages, scored by SpamAssassin offline (Bayes off).

One ``spamassassin --mbox`` process scores all messages (loading the rules
takes about a second; one process per message would be slow).
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from render_helpers import ENV, EXAMPLES, example

from stampcli.audience.resolve import AudienceStats, iter_audience
from stampcli.render.renderer import Renderer

pytestmark = pytest.mark.spamassassin

MAX_SCORE = 0.5
# Rules about headers and MIME structure: none may fire.
STRUCTURAL = re.compile(
    r"^(MIME_|MISSING_|HEADER_|INVALID_|MPART_|HTML_IMAGE_|HTML_MIME_|FROM_|SUBJ_|TO_|MSGID|"
    r"DATE_|FORGED_|BAD_|CTYPE_|PP_MIME|HTML_SHORT|BASE64_|QP_|TVD_|UNPARSEABLE|"
    r"MALFORMED|HDRS_|LIST_PARTIAL|EMPTY_MESSAGE|MISSING)"
)


def _mbox(messages: list[bytes]) -> bytes:
    out = []
    for raw in messages:
        lines = raw.replace(b"\r\n", b"\n").split(b"\n")
        lines = [b">" + x if x.startswith(b"From ") else x for x in lines]
        out.append(b"From news@acme.example Mon Jan  1 00:00:00 2024\n" + b"\n".join(lines))
    return b"\n".join(out) + b"\n"


@pytest.mark.skipif(shutil.which("spamassassin") is None, reason="spamassassin not installed")
def test_example_campaigns_score_low(tmp_path: Path) -> None:
    messages: list[tuple[str, bytes]] = []
    for yml in sorted(EXAMPLES.glob("*.yml")):
        campaign = example(yml.name, tmp_path)
        renderer = Renderer(campaign, env=ENV)
        for contact in itertools.islice(iter_audience(campaign, None, AudienceStats()), 3):
            message = renderer.render(contact.key, contact.email, contact.fields)
            messages.append((f"{yml.name} {contact.key}", message.raw))
    assert len(messages) >= 6
    proc = subprocess.run(
        ["spamassassin", "-L", "--mbox", "--cf=use_bayes 0", "--cf=bayes_auto_learn 0"],
        input=_mbox([raw for _, raw in messages]),
        capture_output=True,
        timeout=120,
        check=True,
    )
    statuses = re.findall(rb"^X-Spam-Status: .*?(?=^\S)", proc.stdout, flags=re.M | re.S)
    assert len(statuses) == len(messages), proc.stderr.decode(errors="replace")[-2000:]
    for (label, _), status in zip(messages, statuses, strict=True):
        text = " ".join(status.decode().split())
        score = float(re.search(r"score=(-?[\d.]+)", text).group(1))  # type: ignore[union-attr]
        tests = re.search(r"tests=(\S*)", text).group(1)  # type: ignore[union-attr]
        rules = {r for r in tests.split(",") if r and r != "none"}
        assert score <= MAX_SCORE, f"{label}: {score} {rules}"
        assert not {r for r in rules if STRUCTURAL.match(r)}, f"{label}: {rules}"
