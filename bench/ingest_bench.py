"""Ingest throughput and latency against a bare FastAPI endpoint, in the same run.

Both servers run as single uvicorn processes with the same settings; the same closed-loop
load (signed single-item Messenger webhooks, every one a new message) is sent to each in
turn, several rounds, and the medians are printed with the ratio ingest / bare.
Every 200 from ingest means the event is durably in JetStream (the bench checks that the
INGEST stream grew by the number of accepted webhooks).

Environment: BENCH_CONNECTIONS (32), BENCH_SECONDS (8), BENCH_ROUNDS (3), BENCH_MAX_RPS (16000,
the most requests per second prepared for), BENCH_NATS_URL.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pickle
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats

from jggl_sandbox.meta_webhooks import Customer, signed, webhook

HERE = Path(__file__).parent
SECRET = "bench-app-secret"  # noqa: S105 - a throwaway secret of the benchmark
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
WARMUP = 2.0
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
NATS_URL = os.environ.get("BENCH_NATS_URL", "nats://127.0.0.1:4222")
MAX_RPS = int(os.environ.get("BENCH_MAX_RPS", "16000"))


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


def _requests(count: int, port: int, rng: random.Random) -> list[bytes]:
    customers = [Customer.new("messenger", rng, page_id="1000" + str(rng.randrange(10**9))) for _ in range(200)]
    out = []
    for i in range(count):
        customer = customers[i % len(customers)]
        now_ms = int(time.time() * 1000)
        hook = signed(webhook("messenger", customer.page_id, [customer.text(timestamp_ms=now_ms)], now_ms), SECRET)
        head = f"POST /webhooks/meta HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(hook.body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in hook.headers.items())
        out.append(head.encode() + b"\r\n" + hook.body)
    return out


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load(port: int, requests: list[bytes], pid: int) -> dict[str, object]:
    with tempfile.NamedTemporaryFile(suffix=".pkl", delete=False) as fh:
        pickle.dump(requests, fh)
    cpu_before = _cpu_seconds(pid)
    try:
        out = subprocess.run(
            [sys.executable, str(HERE / "loadgen.py"), str(port), fh.name, str(CONNECTIONS), str(SECONDS), str(WARMUP)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        os.unlink(fh.name)
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    # Server CPU per answered request (warm-up included on both sides of the division).
    answered = max(1, int(result["requests"]) * (SECONDS + WARMUP) / SECONDS)  # type: ignore[call-overload]
    result["server_cpu_us"] = round((_cpu_seconds(pid) - cpu_before) / answered * 1e6, 1)
    return result


async def _ingest_last_seq() -> int:
    nc = await nats.connect(NATS_URL)
    try:
        info = await nc.jetstream().stream_info("INGEST")
        return int(info.state.last_seq)
    finally:
        await nc.close()


def main() -> None:
    rng = random.Random(time.time_ns())
    env = dict(os.environ)
    env.update(
        APP_KEY=base64.b64encode(os.urandom(32)).decode(),
        NATS_URL=NATS_URL,
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
    try:
        _wait(ingest_port, ingest, "/readyz")
        _wait(bare_port, bare, "/")
        # Enough distinct webhooks that neither server runs out within a round.
        per_round = int(MAX_RPS * (SECONDS + WARMUP))
        results: dict[str, list[dict[str, object]]] = {"bare": [], "ingest": []}
        for round_no in range(1, ROUNDS + 1):
            results["bare"].append(_load(bare_port, _requests(per_round, bare_port, rng), bare.pid))
            before = asyncio.run(_ingest_last_seq())
            result = _load(ingest_port, _requests(per_round, ingest_port, rng), ingest.pid)
            time.sleep(0.5)
            stored = asyncio.run(_ingest_last_seq()) - before
            result["stored_in_jetstream"] = stored
            results["ingest"].append(result)
            print(f"round {round_no}: bare {results['bare'][-1]}  ingest {result}", file=sys.stderr, flush=True)
            if any(float(r[-1]["seconds"]) < SECONDS * 0.95 for r in results.values()):  # type: ignore[arg-type]
                print("warning: a server ran out of prepared requests; raise BENCH_MAX_RPS", file=sys.stderr)
    finally:
        for proc in (ingest, bare):
            proc.terminate()
            proc.wait(15)

    def med(name: str, key: str) -> float:
        return float(statistics.median(float(r[key]) for r in results[name]))  # type: ignore[arg-type]

    bare_rps, ingest_rps = med("bare", "rps"), med("ingest", "rps")
    print(f"\ningest benchmark (median of {ROUNDS} rounds, {CONNECTIONS} connections, {SECONDS:.0f} s each)")
    print(f"{'':8} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'server CPU us/req':>18}")
    for name in ("bare", "ingest"):
        print(
            f"{name:8} {med(name, 'rps'):9.0f} {med(name, 'p50_ms'):8.2f} {med(name, 'p90_ms'):8.2f} "
            f"{med(name, 'p99_ms'):8.2f} {med(name, 'server_cpu_us'):18.0f}"
        )
    print(f"ratio ingest/bare: {ingest_rps / bare_rps:.2f}   (goal >= 0.60 with ingest p99 <= 25 ms)")
    non_200 = sum(v for r in results["ingest"] for k, v in r["statuses"].items() if k != "200")  # type: ignore[union-attr]
    # Requests in flight when the load generator stops are answered and stored but not counted.
    print(
        f"ingest non-200 answers: {non_200}; stored in JetStream per round: "
        f"{[r['stored_in_jetstream'] for r in results['ingest']]} vs 200s counted {[r['statuses'].get('200') for r in results['ingest']]}"
    )  # type: ignore[union-attr]


if __name__ == "__main__":
    main()
