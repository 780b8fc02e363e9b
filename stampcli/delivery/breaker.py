"""A circuit breaker per provider: stop sending to one that is down, probe it, come back.

States:

``closed``
    traffic flows. It opens after ``consecutive`` provider-down answers in a
    row, or when at least ``window`` recent answers (within ``window_seconds``)
    are ``ratio`` or more provider-down.
``open``
    no traffic until the cool-down (``cool_down`` seconds, doubled after each
    failed probe up to ``max_cool_down``) has passed.
``half_open``
    exactly one real message is let through as the probe; its success closes
    the circuit (and resets the cool-down), its failure opens it again.
``refused``
    the provider refused us (bad credentials, suspended account, quota): no
    traffic for the rest of the run.

What counts: PROVIDER_DOWN and UNKNOWN (a provider that keeps timing out
after the data is sick, and every further send risks another unknown) are
failures; ACCEPTED and the recipient outcomes are successes (the provider
answered sensibly); THROTTLED counts for nothing. PROVIDER_REFUSED refuses.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from stampcli.clock import SYSTEM_CLOCK, Clock
from stampcli.providers.base import Outcome

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
REFUSED = "refused"

_FAILURES = (Outcome.PROVIDER_DOWN, Outcome.UNKNOWN)
_SUCCESSES = (Outcome.ACCEPTED, Outcome.RECIPIENT_REJECTED, Outcome.RECIPIENT_DEFERRED)

StateListener = Callable[[str, str], None]  # (new state, reason)


class CircuitBreaker:
    """One provider's circuit. Not thread-safe; meant for one event loop."""

    def __init__(
        self,
        *,
        clock: Clock = SYSTEM_CLOCK,
        consecutive: int = 5,
        window: int = 20,
        ratio: float = 0.5,
        window_seconds: float = 60.0,
        cool_down: float = 30.0,
        max_cool_down: float = 300.0,
        on_change: StateListener | None = None,
    ) -> None:
        self._clock = clock
        self.consecutive = consecutive
        self.window = window
        self.ratio = ratio
        self.window_seconds = window_seconds
        self.base_cool_down = cool_down
        self.max_cool_down = max(cool_down, max_cool_down)
        self._on_change = on_change
        self.state = CLOSED
        self.reason = ""
        self.cool_down = cool_down
        self.opened_at: float | None = None  # when the current open spell began
        self.down_since: float | None = None  # first opening of this outage (kept while probing)
        self._streak = 0
        self._recent: deque[tuple[float, bool]] = deque()  # (when, failed)
        self._probing = False

    # ------------------------------------------------------------------ asking

    @property
    def retry_at(self) -> float | None:
        """Monotonic time a probe may go (now or past if due); None when closed or refused."""
        if self.state == OPEN and self.opened_at is not None:
            return self.opened_at + self.cool_down
        if self.state == HALF_OPEN and not self._probing:
            return self._clock.monotonic()
        return None

    def available(self) -> bool:
        """Would :meth:`allow` let a message through now? (Does not take the probe.)"""
        if self.state == CLOSED:
            return True
        if self.state == REFUSED:
            return False
        if self.state == HALF_OPEN:
            return not self._probing
        retry = self.retry_at
        return retry is not None and self._clock.monotonic() >= retry

    def allow(self) -> bool:
        """May one message go now? In half-open, the first caller becomes the probe."""
        if self.state == CLOSED:
            return True
        if not self.available():
            return False
        if self.state == OPEN:
            self._set(HALF_OPEN, "cool-down over; one message probes the provider")
        self._probing = True
        return True

    @property
    def probing(self) -> bool:
        return self._probing

    # ------------------------------------------------------------------ telling

    def record(self, outcome: Outcome, detail: str = "", *, probe: bool = False) -> None:
        """Count one answer. ``probe`` is True for the message :meth:`allow` made the probe."""
        if self.state == REFUSED:
            return
        if outcome is Outcome.PROVIDER_REFUSED:
            self._probing = False
            self._set(REFUSED, detail or "the provider refused us")
            return
        if probe and self.state == HALF_OPEN:
            self._probing = False
            if outcome in _FAILURES:
                self.cool_down = min(self.max_cool_down, self.cool_down * 2)
                self.opened_at = self._clock.monotonic()
                self._set(OPEN, detail or "the probe failed")
            elif outcome in _SUCCESSES:
                self._close()
            # THROTTLED: still half-open; the next message probes again
            return
        if self.state != CLOSED:
            return  # answers to messages sent before it opened do not decide anything
        if outcome in _FAILURES:
            self._note(True)
            self._streak += 1
            if self._streak >= self.consecutive:
                self._open(f"{self._streak} provider-down answers in a row: {detail}".rstrip(": "))
            elif self._ratio_exceeded():
                self._open(f"most recent answers were provider-down: {detail}".rstrip(": "))
        elif outcome in _SUCCESSES:
            self._note(False)
            self._streak = 0

    def trip(self, seconds: float, reason: str) -> None:
        """Open now for ``seconds`` on another worker's word (the fleet's shared breaker);
        only a closed circuit is tripped: an open or probing one keeps its own course."""
        if self.state != CLOSED:
            return
        now = self._clock.monotonic()
        self.opened_at = now
        self.down_since = now
        self.cool_down = min(self.max_cool_down, max(0.0, seconds))
        self._set(OPEN, reason)

    def release(self) -> None:
        """The probe was abandoned without an answer (cancelled): let another message probe."""
        self._probing = False

    # ------------------------------------------------------------------ internals

    def _note(self, failed: bool) -> None:
        now = self._clock.monotonic()
        self._recent.append((now, failed))
        while len(self._recent) > self.window or (
            self._recent and self._recent[0][0] < now - self.window_seconds
        ):
            self._recent.popleft()

    def _ratio_exceeded(self) -> bool:
        if len(self._recent) < self.window:
            return False
        failed = sum(1 for _, f in self._recent if f)
        return failed / len(self._recent) >= self.ratio

    def _open(self, reason: str) -> None:
        now = self._clock.monotonic()
        self.opened_at = now
        self.down_since = now
        self.cool_down = self.base_cool_down
        self._set(OPEN, reason)

    def _close(self) -> None:
        self._streak = 0
        self._recent.clear()
        self.cool_down = self.base_cool_down
        self.opened_at = None
        self.down_since = None
        self._set(CLOSED, "the probe succeeded")

    def _set(self, state: str, reason: str) -> None:
        self.state = state
        self.reason = reason
        if self._on_change is not None:
            self._on_change(state, reason)
