"""A Postmark fake (tests/provider_fakes.py) in its own process, for bench_api.py.

``python benchmarks/api_fake.py`` prints the fake's base URL and provider URL on one
line, then serves until killed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from provider_fakes import PostmarkFake

if __name__ == "__main__":
    with PostmarkFake() as fake:
        print(fake.url, fake.provider_url(), flush=True)
        while True:
            time.sleep(3600)
