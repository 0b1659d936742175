"""Baseline for bench/sensors.py: a plain faust agent that only iterates a topic.

    python bench/faust_loop.py BOOTSTRAP TOPIC COUNT

Prints one line, ``faust <events/s> <µs of CPU per event>``, measured from the first
event to the last.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid

try:
    import faust
except ImportError:
    sys.exit(
        "faust is not installed here: pip install 'tripwire[faust]' "
        "(`make bench` makes .venv-faust)"
    )

bootstrap, topic_name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
app = faust.App(
    f"bench-faust-{uuid.uuid4().hex[:8]}",
    broker=f"kafka://{bootstrap}",
    store="memory://",
    datadir=tempfile.mkdtemp(prefix="tripwire-bench-faust-"),
    # The embedded broker holds a join for half the session timeout
    # (docs/architecture.md, "Measured facts").
    broker_session_timeout=6,
    broker_heartbeat_interval=2,
    consumer_auto_offset_reset="earliest",
)
topic = app.topic(topic_name, value_serializer="raw", key_serializer="raw")
seen = 0
started = cpu_started = 0.0


@app.agent(topic)
async def loop(stream):  # type: ignore[no-untyped-def]
    global seen, started, cpu_started
    async for _ in stream:
        if seen == 0:
            started, cpu_started = time.perf_counter(), time.process_time()
        seen += 1
        if seen >= count:
            rate = count / (time.perf_counter() - started)
            cpu = (time.process_time() - cpu_started) / count * 1e6
            # fd 1 directly: the faust worker redirects sys.stdout into its logger.
            os.write(1, f"faust {rate:.0f} {cpu:.2f}\n".encode())
            # Stopping the app from inside its own agent deadlocks on the unacked
            # message; the measurement is done, so leave at once.
            os._exit(0)


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "--without-web", "--loglevel", "error"]
    app.main()
