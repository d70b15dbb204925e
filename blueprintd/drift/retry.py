"""When to try a drift restore again, and when to say that it failed (pure).

A restore can fail for good (the server refuses the object: HTTP 422), or "succeed" without
effect (another writer — a controller, a mutating webhook, a default — puts the value back at
once). Retried on every watch event or every few seconds, either becomes a write loop that
floods the member's API server and the MemberCluster's Events. The rules:

* A drift is identified by its *signature*: the drifted paths with their expected and actual
  values. A new signature (someone changed something else, or the same field again to another
  value) starts afresh: it is restored at once.
* After a failed restore the same drift is not tried again before its backoff elapsed: 5 s,
  doubling per failure, at most 5 minutes, each with ±20 % jitter so clusters do not retry in
  step.
* A failure is *reported* (DriftReport message, Warning Event) once per drift: again only when
  its message changes. Retries that fail the same way are silent.
* A restore that reported success but whose drift is still there, unchanged, once the restore's
  own watch event had time to arrive (``confirm_seconds``) did not take effect: that counts as a
  failure, with its own message, and backs off like one.
* When the target matches its Blueprint again its state is forgotten.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Signature = tuple[tuple[str, str, str], ...]

BASE_SECONDS = 5.0
MAX_SECONDS = 300.0
CONFIRM_SECONDS = 1.0
INEFFECTIVE = (
    "the restore was applied, but the server still holds the drifted value: another writer (a controller, a "
    "mutating webhook, a server default) sets it; retrying with backoff"
)


def signature(drifts: Iterable[Any]) -> Signature:
    """What identifies one drift of a target: each path with its expected and actual value."""
    return tuple(sorted((str(d.path), _text(d.expected), _text(d.actual)) for d in drifts))


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@dataclass
class _State:
    signature: Signature
    failures: int = 0
    not_before: float = 0.0
    restored: bool = False  # the last attempt reported success and awaits confirmation
    reported: str = ""


class RestoreBackoff:
    """Per-target restore attempts (keys are target ids). Time is passed in, never read."""

    def __init__(
        self,
        base: float = BASE_SECONDS,
        cap: float = MAX_SECONDS,
        confirm: float = CONFIRM_SECONDS,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.base, self.cap, self.confirm, self.jitter = base, cap, confirm, jitter
        self._states: dict[str, _State] = {}

    def decide(self, key: str, sig: Signature, now: float) -> tuple[float, str]:
        """Whether to restore ``key``'s drift now: ``(0, "")`` restore now; ``(seconds, message)``
        wait that long first, and when ``message`` is set, report it now (a restore that did
        not take effect)."""
        st = self._states.get(key)
        if st is None or st.signature != sig:
            self._states[key] = _State(sig)
            return 0.0, ""
        if now < st.not_before:
            return st.not_before - now, ""
        if st.restored:
            return self.failed(key, sig, INEFFECTIVE, now)
        return 0.0, ""

    def first_attempt(self, key: str) -> bool:
        """No attempt at this drift has failed yet (the report says "restoring" only then)."""
        st = self._states.get(key)
        return st is None or (st.failures == 0 and not st.restored)

    def failed(self, key: str, sig: Signature, message: str, now: float) -> tuple[float, str]:
        """A restore failed: ``(seconds until the next attempt, message to report now or "")``."""
        st = self._states.get(key)
        if st is None or st.signature != sig:
            st = self._states[key] = _State(sig)
        st.failures += 1
        st.restored = False
        delay = min(self.base * 2 ** (st.failures - 1), self.cap) * self.jitter(0.8, 1.2)
        st.not_before = now + delay
        report = message if message != st.reported else ""
        st.reported = message
        return delay, report

    def succeeded(self, key: str, sig: Signature, now: float) -> float:
        """A restore reported success: seconds after which the drift, if still there, counts as
        a failure (the restore's own watch event resolves it before)."""
        st = self._states.get(key)
        if st is None or st.signature != sig:
            st = self._states[key] = _State(sig)
        st.restored = True
        st.not_before = now + self.confirm
        return self.confirm

    def resolved(self, key: str) -> None:
        self._states.pop(key, None)

    def failures(self, key: str) -> int:
        st = self._states.get(key)
        return st.failures if st else 0
