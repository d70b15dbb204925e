"""Retry backoff for deterministic failures and unreachable members, as pure functions.

A failed install of the same chart with the same values fails the same way on the next
resync, and a member that is down is usually still down ten seconds later. Retrying either on
every resync burns a ``helm`` subprocess (or a connection attempt) per member per resync and
says nothing new. So the operator retries with exponential backoff, and records the state in
the typed status (``api.membercluster.RetryBackoff``) so that every operator replica, and the
next process after a restart, agrees on when the next attempt is due. Rules:

1. *Delay.* After the n-th consecutive failed attempt (n ≥ 1) the next attempt waits
   ``min(cap, base * 2^(n-1))`` seconds, less a jitter of up to ``jitter`` (20 %) of it:
   ``delay = d * (1 - jitter * u)`` with ``u`` in [0, 1). With the defaults (base 5 s,
   cap 300 s): 5, 10, 20, 40, 80, 160, 300, 300, ... seconds, each up to 20 % shorter.
2. *Jitter below the cap, deterministic.* The jitter only shortens a delay, so ``cap`` is a
   promise: no retry waits longer. ``u`` is not drawn from a random generator but from a
   hash of (``seed``, n): the seed is the member (and Blueprint) name, so members that failed
   at the same moment (one bad version rolled to a wave) spread their retries, while the
   result stays a pure function of the inputs. Two replicas, or the same replica folding
   the same status twice, compute the same ``nextAttempt``, and an unchanged situation folds
   to an unchanged status (no write).
3. *Reset on success.* A successful attempt clears the backoff (no record at all).
4. *Reset on a new attempt.* ``attempt`` names what was tried (a hash of the version and the
   inputs that decide the rendered values). A failure of a different attempt is the first
   failure of that attempt (n = 1), and :func:`due` reports a changed attempt as due at
   once: a new version or a fixed override is not the same deterministic failure, so it is
   tried on the next resync and not after the old one's delay.
5. *Due.* An attempt is due when there is no backoff record, the attempt changed, or ``now``
   has reached ``nextAttempt``. Until then the operator does nothing for it: no helm
   subprocess, no connection, no status write.

Times are whole seconds (the status clock has no sub-second part); a delay is rounded up so
the wait is never shorter than rule 1 says, and is at least one second.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from blueprintd.api.membercluster import RetryBackoff

__all__ = ["BackoffPolicy", "after_failure", "attempt_key", "delay_seconds", "due"]


@dataclass(frozen=True)
class BackoffPolicy:
    """The backoff's numbers (``OperatorSettings.backoff_base_seconds``/``backoff_cap_seconds``)."""

    base_seconds: float = 5.0
    cap_seconds: float = 300.0
    jitter: float = 0.2  # the largest share of a delay that jitter takes off

    def __post_init__(self) -> None:
        if self.base_seconds <= 0 or self.cap_seconds < self.base_seconds:
            raise ValueError(
                f"backoff base {self.base_seconds} s and cap {self.cap_seconds} s: "
                "need 0 < base <= cap (BLUEPRINTD_BACKOFF_BASE, BLUEPRINTD_BACKOFF_CAP)"
            )
        if not 0 <= self.jitter < 1:
            raise ValueError(f"backoff jitter {self.jitter}: need 0 <= jitter < 1")


def _unit(seed: str, failures: int) -> float:
    """A number in [0, 1) fixed by ``seed`` and ``failures`` (rule 2)."""
    digest = hashlib.sha256(f"{seed}\0{failures}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def delay_seconds(failures: int, policy: BackoffPolicy, seed: str = "") -> int:
    """Whole seconds to wait after the ``failures``-th consecutive failure (rules 1, 2)."""
    if failures < 1:
        return 0
    exponent = min(failures - 1, 62)  # 2**62 * base is past any cap; keeps the float finite
    raw = min(policy.cap_seconds, policy.base_seconds * 2.0**exponent)
    jittered = raw * (1.0 - policy.jitter * _unit(seed, failures))
    return max(1, math.ceil(jittered - 1e-9))


def after_failure(
    previous: RetryBackoff | None, attempt: str, now: datetime, policy: BackoffPolicy, seed: str = ""
) -> RetryBackoff:
    """The backoff record after ``attempt`` failed at ``now`` (rules 1, 2, 4)."""
    same = previous is not None and previous.attempt == attempt
    failures = previous.failures + 1 if same and previous is not None else 1
    return RetryBackoff(
        failures=failures,
        next_attempt=now + timedelta(seconds=delay_seconds(failures, policy, seed)),
        attempt=attempt,
    )


def due(backoff: RetryBackoff | None, attempt: str, now: datetime) -> bool:
    """Whether ``attempt`` may run at ``now`` (rule 5)."""
    if backoff is None or backoff.attempt != attempt or backoff.next_attempt is None:
        return True
    return now >= backoff.next_attempt


def attempt_key(*parts: Any) -> str:
    """A short, stable name for what is being attempted: a hash of JSON-serialisable parts."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
