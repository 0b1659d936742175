"""Load on the publish route: accepted events/s and latency, against a direct publish() loop.

Starts `tripwire api` in its own process (and the embedded broker, unless
--bootstrap or TRIPWIRE_TEST_KAFKA names one), then, from this process and at
the same concurrency:

  * baseline: `publish.aio()` straight to the broker, as an in-process publisher would;
  * API: `POST /api/v1/events/{name}` with a bearer token, as an HTTP publisher would;
  * API under wrk (Debian's `wrk`, when installed) for --seconds: a client that is not
    itself the bottleneck (httpx's pool adds its own queueing at high concurrency).

It prints events/s and p50/p99 latency for each, then reads the events topic
back and counts every id the API answered 202 for: none may be missing.

    python bench/api.py [--events 5000] [--concurrency 32] [--bootstrap host:port]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/api.py`, this folder would shadow the `sensors` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from sensors.api.auth import new_token
from sensors.broker import EmbeddedBroker
from triggers.envelope import decode


async def drive(
    send: Callable[[int], Awaitable[str | None]], events: int, concurrency: int
) -> tuple[float, list[float], list[str]]:
    """Send ``events`` with ``concurrency`` workers; (seconds, latencies, accepted ids)."""
    latencies: list[float] = []
    accepted: list[str] = []
    counter = iter(range(events))

    async def worker() -> None:
        for n in counter:
            started = time.perf_counter()
            event_id = await send(n)
            latencies.append(time.perf_counter() - started)
            if event_id is not None:
                accepted.append(event_id)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - began, latencies, accepted


def report(label: str, seconds: float, latencies: list[float], accepted: int) -> None:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
    print(
        f"{label:<28} {accepted / seconds:>9,.0f} events/s   p50 {p50:6.1f} ms   "
        f"p99 {p99:6.1f} ms   ({accepted} accepted of {len(latencies)})"
    )


async def ids_on_topic(bootstrap: str, topic: str) -> set[str]:
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await reader.start()
    try:
        await reader.topics()
        partitions = [TopicPartition(topic, p) for p in reader.partitions_for_topic(topic) or ()]
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        ends = await reader.end_offsets(partitions)
        found: set[str] = set()

        async def behind() -> bool:
            return any([await reader.position(tp) < ends[tp] for tp in partitions])

        while await behind():
            batch = await reader.getmany(timeout_ms=1000)
            for records in batch.values():
                found.update(decode(r.value, r.headers).id for r in records)
        return found
    finally:
        await reader.stop()


_WRK_SCRIPT = """
local count = 0
function setup(thread)
  count = count + 1
  thread:set("tid", count)
end
function init(args)
  n = 0
  out = io.open("%(dir)s/wrk-ids-" .. tid .. ".txt", "w")
end
function request()
  n = n + 1
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %(token)s"}
  return wrk.format("POST", "/api/v1/events/bench_event?id=wrk" .. tid .. "-" .. n, headers,
                    '{"n": ' .. n .. ', "pad": "%(pad)s"}')
end
function response(status, headers, body)
  if status == 202 then
    out:write(body:match('"id":"([^"]+)"') .. "\\n")
    out:flush()
  end
end
"""


def run_wrk(url: str, token: str, seconds: int, connections: int, home: Path) -> list[str]:
    """Drive the publish route with wrk; print its figures; return the accepted ids."""
    script = home / "publish.lua"
    script.write_text(_WRK_SCRIPT % {"dir": home, "token": token, "pad": "x" * 80})
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    )
    rate = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    p50 = re.search(r"50%\s+(\S+)", done.stdout)
    p99 = re.search(r"99%\s+(\S+)", done.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    ids = [i for f in home.glob("wrk-ids-*.txt") for i in f.read_text().split()]
    per_second = float(rate.group(1)) if rate else 0.0
    print(
        f"{'POST /api/v1/events (wrk)':<28} {per_second:>9,.0f} events/s   "
        f"p50 {p50.group(1) if p50 else '?':>8}   p99 {p99.group(1) if p99 else '?':>8}   "
        f"({len(ids)} accepted, {errors.group(1) if errors else 0} refused)"
    )
    return ids


async def main(args: argparse.Namespace) -> None:
    broker = None
    bootstrap = args.bootstrap or os.environ.get("TRIPWIRE_TEST_KAFKA")
    if bootstrap is None:
        broker = EmbeddedBroker()
        broker.start()
        bootstrap = broker.bootstrap
    home = Path(tempfile.mkdtemp(prefix="tripwire-bench-api-"))
    topic = f"bench-api-{uuid.uuid4().hex[:8]}"
    token = new_token()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "TRIPWIRE_KAFKA_BOOTSTRAP": bootstrap,
        "TRIPWIRE_HOME": str(home),
        "TRIPWIRE_TOPIC_EVENTS": topic,
        "TRIPWIRE_API_TOKEN": token,
        "TRIPWIRE_API_PORT": str(port),
        "TRIPWIRE_API_RATE_LIMIT": "1000000",
        "TRIPWIRE_API_RATE_BURST": "1000000",
    }
    os.environ.update({"TRIPWIRE_KAFKA_BOOTSTRAP": bootstrap, "TRIPWIRE_TOPIC_EVENTS": topic})
    server = subprocess.Popen(  # noqa: ASYNC220  # once, before any load
        [sys.executable, "-m", "sensors", "api"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(home / "api.log").open("wb"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(
            base_url=url,
            headers={"Authorization": f"Bearer {token}"},
            limits=httpx.Limits(max_connections=args.concurrency),
            timeout=30,
        ) as client:
            for _ in range(300):
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise SystemExit("the API did not become ready: " + (home / "api.log").read_text())
            from triggers import publish

            await publish.aio("bench_warmup", {})
            print(
                f"{args.events} events of ~100 bytes, concurrency {args.concurrency}, "
                f"broker {bootstrap}"
            )

            async def direct(n: int) -> str:
                return await publish.aio("bench_event", {"n": n, "pad": "x" * 80})

            seconds, latencies, accepted = await drive(direct, args.events, args.concurrency)
            report("publish.aio (baseline)", seconds, latencies, len(accepted))

            async def over_http(n: int) -> str | None:
                answer = await client.post(
                    "/api/v1/events/bench_event", json={"n": n, "pad": "x" * 80}
                )
                return str(answer.json()["id"]) if answer.status_code == 202 else None

            # Open every connection of the pool first, as a long-running client would have.
            await asyncio.gather(*(over_http(-1 - n) for n in range(args.concurrency)))
            seconds, latencies, accepted = await drive(over_http, args.events, args.concurrency)
            report("POST /api/v1/events (API)", seconds, latencies, len(accepted))
        if shutil.which("wrk"):
            accepted += await asyncio.to_thread(
                run_wrk, url, token, args.seconds, args.concurrency, home
            )
        else:
            print("wrk not installed (apt-get install wrk): skipping the wrk run")
        on_topic = await ids_on_topic(bootstrap, topic)
        missing = set(accepted) - on_topic
        print(
            f"accepted with 202: {len(accepted)}; on the topic: {len(set(accepted) & on_topic)}; "
            f"missing: {len(missing)}"
        )
        if missing:
            raise SystemExit(f"{len(missing)} accepted events are missing from {topic}")
    finally:
        server.terminate()
        server.wait(20)
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=10, help="length of the wrk run")
    parser.add_argument("--bootstrap", default=None)
    asyncio.run(main(parser.parse_args()))
