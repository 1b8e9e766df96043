"""Ingest throughput and latency against a bare FastAPI endpoint, in the same run.

Both servers run as single uvicorn processes with the same settings; the same closed-loop
load (signed single-item Messenger webhooks, every one a new message) is sent to each in
turn for a sustained ``BENCH_SECONDS``, and the figures are printed with the ratio
ingest / bare: requests/s, p50/p90/p99, server CPU per request and the requests/s of each
tenth of the run (a server that cannot sustain the load shows falling tenths). Every 200
from ingest means the event is durably in JetStream (the bench checks that the INGEST
stream of its own NATS server grew by the number of accepted webhooks).

``--old`` (or ``BENCH_OLD=1``): every item is 1–6 hours old by Meta's timestamp, as
Meta's retries after an outage are, so ingest asks Redis about each one (a lookup
coalesced per loop turn, then a write batched every 10 ms) besides JetStream.

Environment: BENCH_CONNECTIONS (64), BENCH_SECONDS (40), BENCH_ROUNDS (1), BENCH_MAX_RPS
(20000, the most requests per second prepared for), BENCH_OLD, BENCH_NATS_URL (default: a
nats-server of the bench's own), BENCH_REDIS_URL.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import pickle
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats

from jggl_common.testing import start_nats_server
from jggl_sandbox.meta_webhooks import Customer, signed, webhook

HERE = Path(__file__).parent
SECRET = "bench-app-secret"  # noqa: S105 - a throwaway secret of the benchmark
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "40"))
WARMUP = 2.0
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1"))
MAX_RPS = int(os.environ.get("BENCH_MAX_RPS", "20000"))
OLD = "--old" in sys.argv[1:] or os.environ.get("BENCH_OLD", "") not in ("", "0")
HOUR_MS = 3_600_000
GOAL = 0.8


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(port: int, proc: subprocess.Popen[bytes], path: str = "/healthz") -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server on {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                if b" 200 " in sock.recv(200) or path == "/":
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server on {port} did not become ready")


def _requests(count: int, rng: random.Random) -> list[bytes]:
    """``count`` distinct signed webhooks framed as HTTP/1.1 requests, built before the clock starts.

    200 customers' messages built like Meta's are the templates; each request is one of
    them with a message id of its own, signed again.
    """
    now_ms = int(time.time() * 1000)
    templates = []
    for _ in range(200):
        customer = Customer.new("messenger", rng, page_id="1000" + str(rng.randrange(10**9)))
        at_ms = now_ms - rng.randint(HOUR_MS, 6 * HOUR_MS) if OLD else now_ms
        item = customer.text(timestamp_ms=at_ms)
        body = signed(webhook("messenger", customer.page_id, [item], at_ms), SECRET).body
        templates.append((body, item["message"]["mid"].encode()))
    run = f"{rng.randrange(16**8):08x}"
    key = SECRET.encode()
    out = []
    for i in range(count):
        body, mid = templates[i % len(templates)]
        unique = f"m_{run}{i:012d}".encode()
        body = body.replace(mid, unique + mid[len(unique) :])
        signature = hmac.digest(key, body, hashlib.sha256).hex()
        out.append(
            b"POST /webhooks/meta HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nX-Hub-Signature-256: sha256=%s\r\n\r\n%s" % (len(body), signature.encode(), body)
        )
    return out


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load(port: int, requests_file: str, pid: int) -> dict[str, object]:
    cpu_before = _cpu_seconds(pid)
    out = subprocess.run(
        [
            sys.executable,
            str(HERE / "loadgen.py"),
            str(port),
            requests_file,
            str(CONNECTIONS),
            str(SECONDS),
            str(WARMUP),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    # Server CPU per answered request (warm-up included on both sides of the division).
    answered = max(1, int(result["requests"]) * (SECONDS + WARMUP) / SECONDS)  # type: ignore[call-overload]
    result["server_cpu_us"] = round((_cpu_seconds(pid) - cpu_before) / answered * 1e6, 1)
    return result


async def _ingest_last_seq(url: str) -> int:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info("INGEST")
        return int(info.state.last_seq)
    finally:
        await nc.close()


def main() -> None:
    rng = random.Random(time.time_ns())
    nats_dir = Path(tempfile.mkdtemp(prefix="ingest-bench-nats-"))
    nats_proc = None
    nats_url = os.environ.get("BENCH_NATS_URL", "")
    if not nats_url:
        # A NATS server of the bench's own: hundreds of thousands of events stay out of the shared stream.
        nats_proc, nats_port = start_nats_server(nats_dir)
        nats_url = f"nats://127.0.0.1:{nats_port}"
    env = dict(os.environ)
    env.update(
        APP_KEY=base64.b64encode(os.urandom(32)).decode(),
        NATS_URL=nats_url,
        REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
        APP_URL="http://localhost:8000",
        META_APP_SECRET=SECRET,
        RATE_LIMIT_PER_MINUTE="100000000",
        LOG_LEVEL="WARNING",
        HOST="127.0.0.1",
    )
    ingest_port, bare_port = _free_port(), _free_port()
    ingest = subprocess.Popen([sys.executable, "-m", "ingest"], env={**env, "PORT": str(ingest_port)})
    bare = subprocess.Popen([sys.executable, str(HERE / "bare_app.py")], env={**env, "PORT": str(bare_port)})
    results: dict[str, list[dict[str, object]]] = {"bare": [], "ingest": []}
    requests_file = str(nats_dir / "requests.pkl")
    try:
        _wait(ingest_port, ingest, "/readyz")
        _wait(bare_port, bare, "/")
        # Enough distinct webhooks that neither server runs out within a round.
        per_round = int(MAX_RPS * (SECONDS + WARMUP))
        for round_no in range(1, ROUNDS + 1):
            with open(requests_file, "wb") as fh:
                pickle.dump(_requests(per_round, rng), fh)
            # The same requests to both: bare first (it keeps nothing), then ingest.
            results["bare"].append(_load(bare_port, requests_file, bare.pid))
            before = asyncio.run(_ingest_last_seq(nats_url))
            result = _load(ingest_port, requests_file, ingest.pid)
            time.sleep(0.5)
            result["stored_in_jetstream"] = asyncio.run(_ingest_last_seq(nats_url)) - before
            results["ingest"].append(result)
            print(f"round {round_no}: bare {results['bare'][-1]}  ingest {result}", file=sys.stderr, flush=True)
            if any(float(r[-1]["seconds"]) < SECONDS * 0.95 for r in results.values()):  # type: ignore[arg-type]
                print("warning: a server ran out of prepared requests; raise BENCH_MAX_RPS", file=sys.stderr)
    finally:
        for proc in (ingest, bare):
            proc.terminate()
            proc.wait(15)
        if nats_proc is not None:
            nats_proc.terminate()
            nats_proc.wait(10)
        shutil.rmtree(nats_dir, ignore_errors=True)

    def med(name: str, key: str) -> float:
        return float(statistics.median(float(r[key]) for r in results[name]))  # type: ignore[arg-type]

    bare_rps, ingest_rps = med("bare", "rps"), med("ingest", "rps")
    items = "1-6 hours old (Redis consulted for each)" if OLD else "fresh"
    print(
        f"\ningest benchmark: {items} items, {CONNECTIONS} connections, {SECONDS:.0f} s sustained,"
        f" median of {ROUNDS} round(s)"
    )
    print(f"{'':8} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'server CPU us/req':>18}  req/s per tenth")
    for name in ("bare", "ingest"):
        print(
            f"{name:8} {med(name, 'rps'):9.0f} {med(name, 'p50_ms'):8.2f} {med(name, 'p90_ms'):8.2f} "
            f"{med(name, 'p99_ms'):8.2f} {med(name, 'server_cpu_us'):18.0f}  {results[name][-1]['rps_by_tenth']}"
        )
    print(f"ratio ingest/bare: {ingest_rps / bare_rps:.2f}   (goal >= {GOAL})")
    # Throughput moves with whatever else runs on the machine; CPU per request much less.
    cpu_ratio = med("bare", "server_cpu_us") / med("ingest", "server_cpu_us")
    print(f"server CPU per request, bare/ingest: {cpu_ratio:.2f}   (the same comparison, less sensitive to other load)")
    non_200 = sum(v for r in results["ingest"] for k, v in r["statuses"].items() if k != "200")  # type: ignore[union-attr]
    # Requests in flight when the load generator stops are answered and stored but not counted.
    stored = [r["stored_in_jetstream"] for r in results["ingest"]]
    counted = [r["statuses"].get("200") for r in results["ingest"]]  # type: ignore[union-attr]
    print(f"ingest non-200 answers: {non_200}; stored in JetStream per round: {stored} vs 200s counted {counted}")


if __name__ == "__main__":
    main()
