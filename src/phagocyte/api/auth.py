"""Authentication and roles for every endpoint: bearer tokens (or the console's cookie), rate-limited.

Each route declares its minimum role with `Depends(require("analyst"))`; the dependency object
keeps that role (`RoleRequirement.role`) so a test can walk the route table and prove that no
endpoint is open and none accepts a lesser role.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from fastapi import HTTPException, Request, status

from phagocyte.cases.service import ROLES, Principal

__all__ = ["COOKIE", "RateLimiter", "RoleRequirement", "require"]

COOKIE = "phago_token"


class RateLimiter:
    """Token bucket per principal: `rate` requests per second on average, bursts up to `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return False
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > 100_000:  # bound memory: forget the idle
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}
            return True


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE)


@dataclass(frozen=True)
class RoleRequirement:
    """A FastAPI dependency: the caller must hold at least `role`."""

    role: str

    def __call__(self, request: Request) -> Principal:
        state = request.app.state
        token = _token(request)
        principal = state.cases.verify_token(token) if token else None
        if principal is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or invalid token",
                                headers={"WWW-Authenticate": "Bearer"})
        if not state.limiter.allow(principal.name + "\0" + (token or "")[:12]):
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "rate limit exceeded",
                                headers={"Retry-After": "1"})
        if not principal.can(self.role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"needs the {self.role} role")
        return principal


def require(role: str) -> RoleRequirement:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    return RoleRequirement(role)
