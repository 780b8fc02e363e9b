"""3c. What DKIM signing adds to a message, on the template corpus (benchmarks/templates/).

Per template, in one run and alternating, ms a message:

* unsigned: ``Renderer(campaign).render_tuple(...)``, the MIME bytes an SMTP
  send writes (the render alone);
* signing: ``DkimSigner.sign`` of the rendered bytes (what the SMTP and outbox
  adapters do with ``dkim:`` set), with a 2048-bit RSA key and with an Ed25519
  key, timed on its own over the same messages (a signed message costs the
  render plus this);
* dkimpy alone: ``dkim.sign(raw, ...)`` of the same bytes, the way a script
  would sign (key PEM parsed on every call, pure-Python RSA): the reference the
  signer is measured against.

Target: signing adds at most max(0.5x the render, 1 ms) a message, and with
RSA 2048 it is >= 4x faster than calling dkimpy's ``sign``. The figure shown is
render + signing against the render alone.

    python -m benchmarks.bench_dkim [--quick]
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import WORK, Ctx, NotMeasured, Row, all_pass, check, median, not_measured
from benchmarks.corpus import CorpusTemplate, load, names, write_list
from benchmarks.stampside import SECRET_ENV

M = "3c. dkim"
SIGN_SHARE = 0.5  # of the render's time
SIGN_FLOOR_MS = 1.0
DKIMPY_X = 4.0
RELAXED = (b"relaxed", b"relaxed")


def _ms(fn: Callable[[], None], n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000 / n


def _keys() -> dict[str, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    none = serialization.NoEncryption()
    pem = serialization.Encoding.PEM
    return {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            pem, serialization.PrivateFormat.TraditionalOpenSSL, none
        ),
        "ed25519": ed25519.Ed25519PrivateKey.generate().private_bytes(
            pem, serialization.PrivateFormat.PKCS8, none
        ),
    }


def measure(t: CorpusTemplate, n: int, n_ref: int, repeat: int) -> dict[str, Any]:
    import dkim

    from stampcli.audience.resolve import AudienceStats, iter_audience
    from stampcli.config import load_campaign
    from stampcli.config.dkim import DkimConfig, parse_key
    from stampcli.render.dkim import DkimSigner
    from stampcli.render.renderer import Renderer

    env = {**os.environ, **SECRET_ENV}
    path = WORK / "corpus" / f"{t.name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_list(path, t.rows(n, 1))
    camp = load_campaign(t.campaign_file, env=env)
    camp = camp.model_copy(update={"audience": camp.audience.model_copy(update={"file": path})})
    contacts = list(iter_audience(camp, None, AudienceStats()))
    if len(contacts) != n:
        raise NotMeasured(f"{t.name}: {len(contacts)} of {n} rows made a contact")
    renderer = Renderer(camp, env=env)
    raw_at = 10  # Message's field order (MessageCodec): raw is the 11th
    keys = _keys()
    config = DkimConfig(domain="example.com", selector="s1", key_env="UNUSED")
    signers = {kind: DkimSigner(config, parse_key(pem)) for kind, pem in keys.items()}
    raws = [renderer.render_tuple(c.key, c.email, c.fields)[raw_at] for c in contacts]
    sample = raws[:n_ref]

    def unsigned() -> None:
        for c in contacts:
            renderer.render_tuple(c.key, c.email, c.fields)

    def signing(signer: DkimSigner) -> Callable[[], None]:
        def go() -> None:
            for raw in raws:
                signer.sign(raw)

        return go

    def dkimpy() -> None:
        for raw in sample:
            dkim.sign(
                raw, b"s1", b"example.com", keys["rsa"], canonicalize=(b"relaxed", b"relaxed")
            )

    unsigned()  # warm: the renderer's caches (skeletons, QP lines) fill on the first pass
    runs: dict[str, list[float]] = {"unsigned": [], "rsa": [], "ed25519": [], "dkimpy": []}
    for _ in range(repeat):
        runs["unsigned"].append(_ms(unsigned, n))
        runs["rsa"].append(_ms(signing(signers["rsa"]), n))
        runs["ed25519"].append(_ms(signing(signers["ed25519"]), n))
        runs["dkimpy"].append(_ms(dkimpy, n_ref))
    sizes = sorted(len(raw) for raw in sample)
    return {
        "runs": runs,
        "median": {k: median(v) for k, v in runs.items()},
        "bytes": sizes[len(sizes) // 2],
        "n": n,
        "n_ref": n_ref,
    }


def _rows_for(name: str, fig: dict[str, Any]) -> list[Row]:
    med = fig["median"]
    out = []
    for kind in ("rsa", "ed25519"):
        sign_ms = med[kind]
        value = med["unsigned"] + sign_ms
        of_unsigned = value / med["unsigned"]
        vs_dkimpy = med["dkimpy"] / sign_ms
        out.append(
            Row(
                M,
                f"{name}, render + sign ({kind})",
                "ms/msg",
                value,
                [med["unsigned"] + r for r in fig["runs"][kind]],
                reference="render alone (unsigned)",
                ref_value=med["unsigned"],
                ref_runs=fig["runs"]["unsigned"],
                ratio=of_unsigned,
                ratio_label="x unsigned",
                target=f"signing <= max({SIGN_SHARE:g}x render, {SIGN_FLOOR_MS:g} ms); "
                f">= {DKIMPY_X:g}x faster than dkim.sign",
                passed=all_pass(
                    check(sign_ms, "<=", max(SIGN_SHARE * med["unsigned"], SIGN_FLOOR_MS)),
                    check(vs_dkimpy, ">=", DKIMPY_X) if kind == "rsa" else True,
                ),
                note=f"signing {sign_ms:.3f} ms a message; dkim.sign (RSA 2048) alone "
                f"{med['dkimpy']:.3f} ms ({vs_dkimpy:.1f}x); {fig['n']} messages "
                f"(dkimpy: {fig['n_ref']}), median {fig['bytes']:,} bytes",
            )
        )
    return out


def run(ctx: Ctx) -> list[Row]:
    n = 300 if ctx.quick else 1_000
    n_ref = 50 if ctx.quick else 200
    rows: list[Row] = []
    for name in names():
        try:
            fig = measure(load(name), n, n_ref, ctx.repeat)
        except NotMeasured as exc:
            rows.append(not_measured(M, f"{name}, render + sign", "ms/msg", str(exc)))
            continue
        rows += _rows_for(name, fig)
    return rows


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    for row in run(Ctx(quick=quick, repeat=1 if quick else 3)):
        print(
            f"{row.figure}: {row.value or 0:.3f} ms | unsigned {row.ref_value or 0:.3f} ms | "
            f"{row.ratio or 0:.2f}x | {'pass' if row.passed else 'FAIL'} | {row.note}"
        )
