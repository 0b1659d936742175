"""Who may call the API: bearer tokens (hashed at rest, scoped) and signed webhooks.

Tokens are random, so their SHA-256 is what the settings keep, and what a
presented token is compared with: every comparison is constant-time
(:func:`hmac.compare_digest`) and runs over every configured token, so timing
tells nothing. A webhook sender may sign its body instead (HMAC-SHA256 over the
raw bytes, ``X-Tripwire-Signature: sha256=<hex>``, GitHub's scheme) with its
own secret. Each token, and each webhook source, also gets a token bucket.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Literal

from triggers.settings import ApiToken, Settings

__all__ = [
    "AuthError",
    "Authenticator",
    "Permission",
    "Principal",
    "RateLimiter",
    "hash_token",
    "new_token",
]

Permission = Literal["publish", "read", "admin"]
_GRANTS: dict[str, frozenset[str]] = {
    "publish": frozenset({"publish"}),
    "read": frozenset({"read"}),
    "admin": frozenset({"publish", "read", "admin"}),
}
SIGNATURE_HEADER = "X-Tripwire-Signature"


def new_token() -> str:
    """A fresh random token (256 bits)."""
    return "tw_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """How settings keep a token: ``sha256:`` and its hex digest."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


class AuthError(Exception):
    """Raised when a request's credentials are missing or wrong (401) or too weak (403)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's or a webhook source's name, and what it may do."""

    name: str
    scope: str
    events: tuple[str, ...] = ()
    projects: tuple[str, ...] = ()

    def require(self, *permissions: Permission) -> None:
        """Raise unless the scope grants one of ``permissions``."""
        if _GRANTS[self.scope].isdisjoint(permissions):
            needed = " or ".join(repr(p) for p in permissions)
            raise AuthError(
                403,
                "forbidden",
                f"the credential {self.name!r} has scope {self.scope!r}, and this needs "
                f"{needed}; use a token with that scope",
            )

    def require_event(self, name: str) -> None:
        if self.events and not name.startswith(self.events):
            raise AuthError(
                403,
                "forbidden",
                f"the credential {self.name!r} may publish only events starting with "
                f"{list(self.events)}, not {name!r}",
            )

    def require_project(self, project: str) -> None:
        if self.projects and project not in self.projects:
            raise AuthError(
                403,
                "forbidden",
                f"the credential {self.name!r} may use only projects {list(self.projects)}, "
                f"not {project!r}",
            )


class Authenticator:
    """Checks bearer tokens and webhook signatures against the settings."""

    def __init__(self, settings: Settings) -> None:
        tokens = list(settings.api_tokens)
        if settings.api_token is not None:
            secret = settings.api_token.get_secret_value()
            hashed = secret if secret.startswith("sha256:") else hash_token(secret)
            tokens.append(ApiToken(name="api_token", hash=hashed, scope="admin"))
        self._tokens = tokens
        self._sources = settings.webhook_sources

    @property
    def configured(self) -> bool:
        """False when no token or source is configured: then nothing is accepted."""
        return bool(self._tokens or self._sources)

    def bearer(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization: Bearer <token>`` header.

        Raises:
            AuthError: 401 when the header is missing, malformed or the token unknown.
        """
        if not authorization:
            raise AuthError(
                401, "unauthorized", "missing credentials: send `Authorization: Bearer <token>`"
            )
        kind, _, token = authorization.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise AuthError(
                401,
                "unauthorized",
                "malformed Authorization header: send `Authorization: Bearer <token>`",
            )
        presented = hash_token(token.strip()).encode()
        found: ApiToken | None = None
        for candidate in self._tokens:  # all of them, whichever matches: constant time
            if hmac.compare_digest(presented, candidate.hash.encode()):
                found = candidate
        if found is None:
            raise AuthError(401, "unauthorized", "invalid token: it matches no configured token")
        return Principal(found.name, found.scope, tuple(found.events), tuple(found.projects))

    def webhook(self, source: str, signature: str | None, body: bytes) -> Principal:
        """The principal of a signed webhook call from ``source``.

        Raises:
            AuthError: 401 for an unknown source, or a missing or wrong signature.
        """
        configured = self._sources.get(source)
        if configured is None:
            raise AuthError(
                401,
                "unauthorized",
                f"no webhook source {source!r} is configured (TRIPWIRE_WEBHOOK_SOURCES); send a "
                "bearer token instead",
            )
        if not signature:
            raise AuthError(
                401, "unauthorized", f"missing {SIGNATURE_HEADER} header: sign the body"
            )
        key = configured.secret.get_secret_value().encode()
        expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
            raise AuthError(
                401,
                "unauthorized",
                f"invalid {SIGNATURE_HEADER}: expected sha256= and the HMAC-SHA256 of the raw "
                f"body with the secret of source {source!r}",
            )
        return Principal(f"webhook:{source}", "publish", tuple(configured.events))


@dataclass
class RateLimiter:
    """A token bucket per caller: ``rate`` requests a second, ``burst`` at once."""

    rate: float
    burst: int
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def take(self, who: str) -> float | None:
        """Take one request for ``who``; None if allowed, else seconds until one is."""
        now = time.monotonic()
        tokens, last = self._buckets.get(who, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1:
            self._buckets[who] = (tokens, now)
            return (1 - tokens) / self.rate
        self._buckets[who] = (tokens - 1, now)
        return None

    @staticmethod
    def retry_after(seconds: float) -> str:
        return str(max(1, math.ceil(seconds)))
