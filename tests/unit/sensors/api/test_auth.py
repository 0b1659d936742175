"""Tokens, scopes, webhook signatures and rate limits, without a server."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from sensors.api.auth import Authenticator, AuthError, RateLimiter, hash_token, new_token
from triggers.settings import ApiToken, Settings, WebhookSource


def authenticator(**extra: object) -> tuple[Authenticator, dict[str, str]]:
    tokens = {"read": new_token(), "pub": new_token()}
    settings = Settings(
        api_tokens=[
            ApiToken(name="reader", hash=hash_token(tokens["read"]), scope="read", projects=["p"]),
            ApiToken(
                name="etl", hash=hash_token(tokens["pub"]), scope="publish", events=["orders."]
            ),
        ],
        webhook_sources={"github": WebhookSource(secret="hook-secret", events=["github."])},  # type: ignore[arg-type]
        **extra,  # type: ignore[arg-type]
    )
    return Authenticator(settings), tokens


def test_a_token_is_kept_as_its_hash_and_found_by_it() -> None:
    auth, tokens = authenticator()
    who = auth.bearer(f"Bearer {tokens['read']}")
    assert (who.name, who.scope, who.projects) == ("reader", "read", ("p",))
    assert hash_token("x") == "sha256:" + hashlib.sha256(b"x").hexdigest()


@pytest.mark.parametrize(
    ("header", "says"),
    [
        (None, "missing credentials"),
        ("Token abc", "malformed"),
        ("Bearer ", "malformed"),
        ("Bearer tw_nope", "invalid token"),
    ],
)
def test_missing_or_wrong_credentials_are_401_and_say_which(header: str | None, says: str) -> None:
    auth, _ = authenticator()
    with pytest.raises(AuthError) as caught:
        auth.bearer(header)
    assert caught.value.status == 401 and says in caught.value.message
    assert "tw_nope" not in caught.value.message


def test_scopes_event_prefixes_and_projects_are_403() -> None:
    auth, tokens = authenticator()
    reader = auth.bearer(f"Bearer {tokens['read']}")
    with pytest.raises(AuthError, match="needs 'publish'") as caught:
        reader.require("publish")
    assert caught.value.status == 403
    reader.require("read")
    with pytest.raises(AuthError, match="only projects"):
        reader.require_project("q")
    etl = auth.bearer(f"Bearer {tokens['pub']}")
    etl.require_event("orders.loaded")
    with pytest.raises(AuthError, match="starting with"):
        etl.require_event("payments")


def test_the_admin_api_token_may_be_given_plain_or_as_its_hash() -> None:
    token = new_token()
    for given in (token, hash_token(token)):
        auth = Authenticator(Settings(api_token=given))  # type: ignore[arg-type]
        assert auth.bearer(f"Bearer {token}").scope == "admin"
    assert not Authenticator(Settings(api_token=None)).configured


def test_a_webhook_is_checked_against_the_hmac_of_its_raw_body() -> None:
    auth, _ = authenticator()
    body = b'{"ref": "main"}'
    signature = "sha256=" + hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
    who = auth.webhook("github", signature, body)
    assert (who.name, who.scope, who.events) == ("webhook:github", "publish", ("github.",))
    for source, sig, raw, says in [
        ("github", signature, body + b"\n", "invalid X-Tripwire-Signature"),
        ("github", None, body, "missing X-Tripwire-Signature"),
        ("github", "sha1=" + signature[7:], body, "invalid"),
        ("gitlab", signature, body, "no webhook source 'gitlab'"),
    ]:
        with pytest.raises(AuthError, match=says) as caught:
            auth.webhook(source, sig, raw)
        assert "hook-secret" not in caught.value.message


def test_the_rate_limiter_allows_a_burst_then_the_rate() -> None:
    limiter = RateLimiter(rate=2, burst=3)
    assert [limiter.take("a") for _ in range(3)] == [None, None, None]
    wait = limiter.take("a")
    assert wait is not None and 0 < wait <= 0.5
    assert limiter.take("b") is None  # its own bucket
    assert RateLimiter.retry_after(0.2) == "1"
