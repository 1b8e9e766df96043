"""A small closed-loop HTTP/1.1 load generator (keep-alive connections, pre-built requests).

It runs in its own process so the server under test and the generator each get a core.
Prints one JSON line: requests, seconds, rps, p50/p90/p99 latency in ms, statuses, and
the requests per second of each tenth of the run (a server that cannot sustain the load
shows falling tenths).
Usage: python loadgen.py PORT REQUESTS_FILE CONNECTIONS DURATION_S WARMUP_S
"""

from __future__ import annotations

import asyncio
import json
import pickle
import sys
import time
from collections import Counter

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None


async def _connection(
    port: int,
    requests: list[bytes],
    start: int,
    step: int,
    stop_at: float,
    record_from: float,
    out: list[tuple[float, float]],
    statuses: Counter[int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    index = start
    try:
        while True:
            now = time.perf_counter()
            if now >= stop_at or index >= len(requests):
                return
            writer.write(requests[index])
            index += step
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            done = time.perf_counter()
            if now >= record_from:
                out.append((done, done - now))
                statuses[status] += 1
    finally:
        writer.close()


async def run(port: int, requests: list[bytes], connections: int, duration: float, warmup: float) -> dict[str, object]:
    answers: list[tuple[float, float]] = []
    statuses: Counter[int] = Counter()
    began = time.perf_counter()
    record_from = began + warmup
    stop_at = record_from + duration
    await asyncio.gather(
        *(
            _connection(port, requests, i, connections, stop_at, record_from, answers, statuses)
            for i in range(connections)
        )
    )
    elapsed = min(time.perf_counter(), stop_at) - record_from
    latencies = sorted(latency for _, latency in answers)
    tenths = [0] * 10
    if elapsed > 0:
        for done, _ in answers:
            tenths[min(9, max(0, int((done - record_from) / elapsed * 10)))] += 1

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2) if latencies else 0.0

    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 2),
        "rps": round(len(latencies) / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "statuses": dict(statuses),
        "rps_by_tenth": [round(n / (elapsed / 10)) for n in tenths] if elapsed > 0 else [],
    }


def main() -> None:
    port, path, connections, duration, warmup = sys.argv[1:6]
    with open(path, "rb") as fh:
        requests: list[bytes] = pickle.load(fh)  # noqa: S301 - a file this benchmark just wrote
    if uvloop is not None:
        uvloop.install()
    result = asyncio.run(run(int(port), requests, int(connections), float(duration), float(warmup)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
