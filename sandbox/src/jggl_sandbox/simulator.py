"""``jggl-simulate``: customers writing to the business, as signed Meta webhooks.

The simulator plays Meta's side of the webhook: a population of Messenger and
Instagram customers sends text, media, postbacks, reactions, receipts and the rest
(see :data:`jggl_sandbox.meta_webhooks.VARIANTS`) to ingest's ``POST /webhooks/meta``,
each body signed with the app secret, at a steady rate, and reports how ingest
answered (status counts, achieved rate, latency percentiles).

It is also a library: :func:`customer_webhooks` builds the traffic and
:func:`send_webhooks` delivers any iterable of :class:`SignedWebhook` with pacing
and bounded concurrency, for tests and benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, TextIO

import httpx

from .meta_webhooks import (
    DEFAULT_INSTAGRAM_ACCOUNT_ID,
    DEFAULT_PAGE_ID,
    PLATFORMS,
    VARIANTS,
    Customer,
    JSONObject,
    Platform,
    SignedWebhook,
    entry,
    envelope,
    object_for,
    signed,
    variants_for,
)

__all__ = [
    "DEFAULT_MIX",
    "DEFAULT_URL",
    "Progress",
    "RunStats",
    "customer_webhooks",
    "main",
    "percentile",
    "send_webhooks",
]

DEFAULT_URL: Final = "http://127.0.0.1:8001/webhooks/meta"

# Relative weights of the default traffic: mostly text, receipts and echoes, a
# little of everything else. Variants not listed weigh 1.
DEFAULT_MIX: Final[Mapping[str, int]] = {
    "text": 40,
    "image": 4,
    "audio": 2,
    "quick_reply": 5,
    "reply": 3,
    "postback": 3,
    "get_started": 2,
    "icebreaker": 2,
    "share": 2,
    "story_mention": 2,
    "story_reply": 2,
    "reaction": 3,
    "read": 8,
    "delivery": 6,
    "echo": 6,
}


# ------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) of ``values`` by nearest rank; ``None`` if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class RunStats:
    """What a run did: requests sent, how they were answered, and how fast.

    ``by_status`` counts HTTP status codes (``"200"``, ``"401"``...) and transport
    errors by exception name (``"ConnectError"``, ``"ReadTimeout"``...). ``ok`` is
    the number of 2xx answers, ``failed`` everything else. Latencies are those of
    answered requests, in milliseconds.
    """

    sent: int = 0
    ok: int = 0
    failed: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def completed(self) -> int:
        """Requests answered or failed so far."""
        return self.ok + self.failed

    @property
    def rate(self) -> float:
        """Completed requests per second over the run."""
        return self.completed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile(self, q: float) -> float | None:
        """Latency percentile in ms (nearest rank), ``None`` before any answer."""
        return percentile(self.latencies_ms, q)

    def _record(self, status: str, ok: bool, latency_ms: float | None) -> None:
        self.by_status[status] += 1
        if ok:
            self.ok += 1
        else:
            self.failed += 1
        if latency_ms is not None:
            self.latencies_ms.append(latency_ms)


@dataclass(frozen=True, slots=True)
class Progress:
    """A progress report, about once a second and once more when the run ends.

    ``rate`` and the percentiles cover the interval since the previous report (the
    whole run when ``done``).
    """

    elapsed_s: float
    sent: int
    ok: int
    failed: int
    in_flight: int
    rate: float
    p50_ms: float | None
    p99_ms: float | None
    done: bool = False


# --------------------------------------------------------------------- delivery


async def _sleep_or_stop(seconds: float, stop: asyncio.Event | None) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def send_webhooks(
    url: str,
    webhooks: Iterable[SignedWebhook],
    rate: float | None,
    concurrency: int,
    client: httpx.AsyncClient | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    *,
    duration: float | None = None,
    stop: asyncio.Event | None = None,
    progress_interval: float = 1.0,
    timeout: float = 10.0,
) -> RunStats:
    """POST every webhook to ``url`` and return what happened.

    ``rate`` paces request starts (per second, ``None`` for as fast as
    ``concurrency`` allows); after a stall at most ~50 ms worth of requests are
    sent in a burst to catch up. At most ``concurrency`` requests are in flight.
    The run ends when ``webhooks`` is exhausted, ``duration`` seconds have passed
    or ``stop`` is set; requests already in flight are then awaited.
    ``on_progress`` is called every ``progress_interval`` seconds and once at the
    end (``done=True``). A ``client`` passed in is shared by all slots and left
    open; otherwise each slot gets a one-connection client with ``timeout``,
    closed at the end.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if rate is not None and rate <= 0:
        raise ValueError("rate must be positive (or None for unpaced)")

    # httpcore scans its whole pool on every request, which makes one client with
    # many connections several times slower than many one-connection clients; so
    # without a caller's client each slot gets a client (and one shared TLS context).
    own_clients: list[httpx.AsyncClient] = []
    if client is None:
        tls = httpx.create_ssl_context()
        one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        own_clients = [httpx.AsyncClient(timeout=timeout, limits=one, verify=tls) for _ in range(concurrency)]
    # A free slot is a client in this queue: it bounds the requests in flight.
    idle: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
    for http in own_clients if client is None else [client] * concurrency:
        idle.put_nowait(http)
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + duration if duration is not None else None
    stats = RunStats()
    window: list[float] = []
    in_flight: set[asyncio.Task[None]] = set()

    async def post(http: httpx.AsyncClient, webhook: SignedWebhook) -> None:
        try:
            t0 = time.perf_counter()
            try:
                response = await http.post(url, content=webhook.body, headers=webhook.headers)
            except httpx.HTTPError as exc:
                stats._record(type(exc).__name__, False, None)
            else:
                latency_ms = (time.perf_counter() - t0) * 1000
                window.append(latency_ms)
                stats._record(str(response.status_code), response.is_success, latency_ms)
        finally:
            idle.put_nowait(http)

    async def report_every_interval() -> None:
        last_t, last_completed = started, 0
        while True:
            await asyncio.sleep(progress_interval)
            now = loop.time()
            completed = stats.completed
            assert on_progress is not None
            on_progress(
                Progress(
                    elapsed_s=now - started,
                    sent=stats.sent,
                    ok=stats.ok,
                    failed=stats.failed,
                    in_flight=len(in_flight),
                    rate=(completed - last_completed) / (now - last_t),
                    p50_ms=percentile(window, 50),
                    p99_ms=percentile(window, 99),
                )
            )
            window.clear()
            last_t, last_completed = now, completed

    reporter = asyncio.create_task(report_every_interval()) if on_progress is not None else None
    interval = 1.0 / rate if rate is not None else 0.0
    max_lag = max(interval, 0.05)
    next_at = started
    try:
        for webhook in webhooks:
            if stop is not None and stop.is_set():
                break
            now = loop.time()
            if deadline is not None and now >= deadline:
                break
            if interval:
                next_at = max(next_at, now - max_lag)
                if next_at > now:
                    if deadline is not None and next_at >= deadline:
                        break
                    await _sleep_or_stop(next_at - now, stop)
                    if stop is not None and stop.is_set():
                        break
                next_at += interval
            http = await idle.get()
            stats.sent += 1
            task = asyncio.create_task(post(http, webhook))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.gather(*in_flight)
    finally:
        for task in in_flight:
            task.cancel()
        if reporter is not None:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
        for http in own_clients:
            await http.aclose()
        stats.elapsed_s = loop.time() - started

    if on_progress is not None:
        on_progress(
            Progress(
                elapsed_s=stats.elapsed_s,
                sent=stats.sent,
                ok=stats.ok,
                failed=stats.failed,
                in_flight=0,
                rate=stats.rate,
                p50_ms=stats.percentile(50),
                p99_ms=stats.percentile(99),
                done=True,
            )
        )
    return stats


# ---------------------------------------------------------------------- traffic


def customer_webhooks(
    app_secret: str,
    *,
    platforms: Sequence[Platform] = PLATFORMS,
    variants: Sequence[str] | None = None,
    customers: int = 50,
    seed: int = 0,
    batch: int = 1,
    standby_share: float = 0.0,
    page_ids: Mapping[Platform, str] | None = None,
    clock_ms: Callable[[], int] | None = None,
    weights: Mapping[str, int] | None = DEFAULT_MIX,
) -> Iterator[SignedWebhook]:
    """An endless stream of signed webhooks from a population of customers.

    ``customers`` customers are spread over ``platforms``; each POST picks a
    platform and carries ``batch`` items (one ``entry`` each, as Meta batches),
    every item from a random customer of that platform and of a variant drawn
    from ``variants`` (all variants when ``None``) that the platform sends,
    weighted by ``weights`` (missing names weigh 1; ``None`` for equal weights).
    A customer's first item is a text message when ``text`` is among the
    variants, the way a new lead usually starts.
    ``standby_share`` of the entries put their item under ``standby``.

    Timestamps come from ``clock_ms`` (e.g. the wall clock) or, without one, from
    each customer's simulated clock, in which case the same arguments give the
    same bytes. Bound the stream with :func:`itertools.islice`. Arguments are
    checked at once (``ValueError``), before the first webhook is drawn.
    """
    if customers < 1 or batch < 1:
        raise ValueError("customers and batch must be at least 1")
    chosen = list(variants) if variants is not None else list(VARIANTS)
    unknown = [name for name in chosen if name not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants: {', '.join(unknown)}")
    menus: dict[Platform, tuple[list[str], list[int]]] = {}
    for platform in platforms:
        names = [name for name in variants_for(platform) if name in chosen]
        if not names:
            raise ValueError(f"none of the variants is sent on {platform}")
        menus[platform] = (names, [(weights or {}).get(name, 1) for name in names])
    return _stream(
        app_secret,
        platforms=platforms,
        menus=menus,
        customers=customers,
        seed=seed,
        batch=batch,
        standby_share=standby_share,
        page_ids=page_ids,
        clock_ms=clock_ms,
    )


def _stream(
    app_secret: str,
    *,
    platforms: Sequence[Platform],
    menus: Mapping[Platform, tuple[list[str], list[int]]],
    customers: int,
    seed: int,
    batch: int,
    standby_share: float,
    page_ids: Mapping[Platform, str] | None,
    clock_ms: Callable[[], int] | None,
) -> Iterator[SignedWebhook]:
    rng = random.Random(seed)
    ids = {"messenger": DEFAULT_PAGE_ID, "instagram": DEFAULT_INSTAGRAM_ACCOUNT_ID, **(page_ids or {})}
    population: dict[Platform, list[Customer]] = {platform: [] for platform in platforms}
    for i in range(max(customers, len(platforms))):
        platform = platforms[i % len(platforms)]
        population[platform].append(Customer.new(platform, rng, page_id=ids[platform]))
    started: set[str] = set()

    while True:
        platform = rng.choice(platforms)
        names, weights = menus[platform]
        entries: list[JSONObject] = []
        for _ in range(batch):
            customer = rng.choice(population[platform])
            first = customer.user_id not in started and "text" in names
            name = "text" if first else rng.choices(names, weights)[0]
            started.add(customer.user_id)
            timestamp = None
            if clock_ms is not None:
                timestamp = max(clock_ms(), customer.clock_ms + 1)
            _, item = customer.make(name, timestamp_ms=timestamp)
            standby = standby_share > 0 and rng.random() < standby_share
            entry_time = clock_ms() if clock_ms is not None else customer.clock_ms
            entries.append(entry(customer.page_id, [item], entry_time, standby=standby))
        yield signed(envelope(object_for(platform), entries), app_secret)


# -------------------------------------------------------------------------- CLI


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _print_progress(stream: TextIO) -> Callable[[Progress], None]:
    def show(p: Progress) -> None:
        if p.done:
            return
        print(
            f"[{p.elapsed_s:6.1f}s] sent {p.sent:>7}  ok {p.ok:>7}  failed {p.failed:>5}  "
            f"in flight {p.in_flight:>3}  rate {p.rate:7.1f}/s  "
            f"p50 {_ms(p.p50_ms)} ms  p99 {_ms(p.p99_ms)} ms",
            file=stream,
            flush=True,
        )

    return show


def _summary(stats: RunStats, *, url: str, batch: int, rate: float | None, seed: int) -> str:
    lines = [
        f"jggl-simulate: {stats.sent} webhooks ({stats.sent * batch} items) to {url} in {stats.elapsed_s:.2f} s",
    ]
    for status, count in sorted(stats.by_status.items()):
        label = f"status {status}" if status.isdigit() else f"error {status}"
        lines.append(f"  {label:<24}{count:>8}")
    lines.append(f"  {'ok / failed':<24}{stats.ok:>8} / {stats.failed}")
    target = f"{rate:g}/s" if rate is not None else "unpaced"
    lines.append(f"  {'achieved rate':<24}{stats.rate:>8.1f} req/s (target {target})")
    lines.append(
        f"  {'latency ms':<24}p50 {_ms(stats.percentile(50))}  p90 {_ms(stats.percentile(90))}  "
        f"p99 {_ms(stats.percentile(99))}  max {_ms(max(stats.latencies_ms, default=None))}"
    )
    lines.append(f"  {'seed':<24}{seed:>8}")
    return "\n".join(lines)


def _variant_list() -> str:
    rows = []
    for name, v in VARIANTS.items():
        where = "both" if len(v.platforms) == len(PLATFORMS) else next(iter(v.platforms))
        rows.append(f"{name:<22}{v.kind:<10}{where:<11}{v.description}")
    return "\n".join([f"{'variant':<22}{'kind':<10}{'platform':<11}description", *rows])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jggl-simulate",
        description="Send correctly signed Meta (Messenger/Instagram) webhooks to ingest, as customers would.",
        epilog="Exit status: 0 when every request got a 2xx answer, 1 otherwise, 2 for bad arguments.",
    )
    parser.add_argument("--url", default=DEFAULT_URL, help="webhook endpoint (default: %(default)s)")
    parser.add_argument("--app-secret", help="Meta app secret to sign with (default: $META_APP_SECRET)")
    parser.add_argument(
        "--rate", type=float, default=100.0, help="requests per second, 0 for unpaced (default: %(default)s)"
    )
    parser.add_argument(
        "--count",
        type=int,
        default=1000,
        help="requests to send, 0 for no limit (needs --duration) (default: %(default)s)",
    )
    parser.add_argument("--duration", type=float, help="stop sending after this many seconds")
    parser.add_argument("--platform", choices=["messenger", "instagram", "both"], default="both")
    parser.add_argument(
        "--kinds",
        default="mix",
        help="comma-separated variants (see --list-kinds), 'mix' for the default weighted mix, 'all' for every variant",
    )
    parser.add_argument("--customers", type=int, default=50, help="distinct customers (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight at most (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=1, help="items per request, 1-1000 (default: %(default)s)")
    parser.add_argument("--standby", type=float, default=0.0, help="share of items sent under standby[] (0-1)")
    parser.add_argument("--seed", type=int, help="seed for customers and message ids (default: random, printed)")
    parser.add_argument("--page-id", default=os.environ.get("META_PAGE_ID") or DEFAULT_PAGE_ID, help="Facebook Page id")
    parser.add_argument("--ig-account-id", default=DEFAULT_INSTAGRAM_ACCOUNT_ID, help="Instagram account id")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in seconds")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--list-kinds", action="store_true", help="list the variants and exit")
    return parser


async def _run(url: str, webhooks: Iterable[SignedWebhook], args: argparse.Namespace) -> RunStats:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Ctrl-C ends the run gracefully: in-flight requests finish, the summary prints.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        return await send_webhooks(
            url,
            webhooks,
            args.rate or None,
            args.concurrency,
            on_progress=None if args.quiet else _print_progress(sys.stderr),
            duration=args.duration,
            stop=stop,
            timeout=args.timeout,
        )
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``jggl-simulate``; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list_kinds:
        print(_variant_list())
        return 0
    secret = args.app_secret or os.environ.get("META_APP_SECRET")
    if not secret:
        parser.error("no app secret: pass --app-secret or set META_APP_SECRET")
    if args.count < 0 or (args.count == 0 and args.duration is None):
        parser.error("--count must be positive, or 0 together with --duration, so that the run ends")
    if args.rate < 0 or args.concurrency < 1 or args.customers < 1 or not 1 <= args.batch <= 1000:
        parser.error("--rate must be >= 0, --concurrency and --customers >= 1, --batch within 1-1000")
    if not 0 <= args.standby <= 1:
        parser.error("--standby is a share between 0 and 1")

    try:
        scheme = httpx.URL(args.url).scheme
    except httpx.InvalidURL as exc:
        parser.error(f"--url: {exc}")
    if scheme not in {"http", "https"}:
        parser.error("--url must be an http:// or https:// URL")

    platforms: tuple[Platform, ...] = PLATFORMS if args.platform == "both" else (args.platform,)
    kinds = args.kinds.strip()
    # "mix": every variant, weighted like real traffic; "all" or a list: equal weights.
    variants = None if kinds in {"mix", "all"} else [v.strip() for v in kinds.split(",") if v.strip()]
    weights = DEFAULT_MIX if kinds == "mix" else None
    seed = args.seed if args.seed is not None else random.randrange(1, 2**31)
    try:
        traffic = customer_webhooks(
            secret,
            platforms=platforms,
            variants=variants,
            customers=args.customers,
            seed=seed,
            batch=args.batch,
            standby_share=args.standby,
            page_ids={"messenger": args.page_id, "instagram": args.ig_account_id},
            clock_ms=lambda: time.time_ns() // 1_000_000,
            weights=weights,
        )
    except ValueError as exc:
        parser.error(str(exc))
    webhooks: Iterable[SignedWebhook] = traffic
    if args.count:
        webhooks = itertools.islice(webhooks, args.count)

    stats = asyncio.run(_run(args.url, webhooks, args))
    print(_summary(stats, url=args.url, batch=args.batch, rate=args.rate or None, seed=seed))
    return 0 if stats.sent > 0 and stats.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
