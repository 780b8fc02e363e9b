"""The per-skeleton encodings of the fast path equal encoding the whole text."""

from __future__ import annotations

import random

from stampcli.render import mime, skeleton_cache, textpart

_WORDS = ["Ann", "plan", "é", "=_x", "a" * 90, "x\t", "free ", "ok.", "=", "\x00", "y "]


def _case(rng: random.Random) -> tuple[list[str], list[int], list[str]]:
    n = rng.randint(0, 4)
    seps = ["\n", "\r\n", "\r", " ", "", "\n\n", "    "]
    parts = [
        "".join(rng.choice(_WORDS + seps) for _ in range(rng.randint(0, 30))) for _ in range(n + 1)
    ]
    values = [rng.choice(["Ann", "Ünal", "pro", "b" * 120, "x=_y", "1"]) for _ in range(n)]
    slots = [rng.randrange(n) for _ in range(n)] if n else []
    return parts, slots, values


def test_html_qp_and_text_7bit_match_whole_text_encoding() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        parts, slots, values = _case(rng)
        joined = skeleton_cache._join(parts, slots, values)
        qp = skeleton_cache.HtmlQP(parts, slots, mime.qp_encode).encode(values)
        assert qp == mime.QPCache().encode(joined) == mime.qp_encode(joined)
        if "\r" in "".join(parts):
            continue  # text parts come from html2text, which writes LF only
        cached = skeleton_cache.Text7bit(parts, slots, textpart.finish_line)
        finished = textpart.finish(joined)
        got, seven = cached.render(values)
        assert got == finished  # 7bit or not, the wrapped text is the same
        assert cached.render(values, check=False) == (finished, False)
        if seven:
            assert mime.text_body(finished) == ("7bit", got.encode().replace(b"\n", b"\r\n"))
        else:
            assert mime.text_body(finished)[0] == "quoted-printable"
