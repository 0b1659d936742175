"""Redis Streams: the web app appends sign-ups to a stream; each welcomes its user.

Start the engine with ``tripwire dev examples/sources/`` and run this file: it appends
an entry with the fields ``user`` and ``plan`` to the ``signups`` stream, as the web app
does. Without ``field``, an entry's fields are the payload.
"""

from __future__ import annotations

import asyncio
import os
import uuid

from triggers import EventSource, trigger

signups = EventSource(
    name="web_signups",
    url="redis://${REDIS_HOST:-127.0.0.1:6379}/0",
    stream="signups",
    event="user_signed_up",
    filters=['$.plan in ["pro", "team"]'],
)


@trigger(event="user_signed_up")
def welcome_user(user: str, plan: str) -> None:
    print(f"welcoming {user} to the {plan} plan")


async def append_signup() -> None:
    import redis.asyncio as redis

    client = redis.from_url(f"redis://{os.environ.get('REDIS_HOST', '127.0.0.1:6379')}/0")
    try:
        user = f"ada-{uuid.uuid4().hex[:6]}"
        entry = await client.xadd("signups", {"user": user, "plan": "pro"})
        print(f"appended {user} to the signups stream as {entry.decode()}")
    finally:
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(append_signup())
