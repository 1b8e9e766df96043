"""The channel health check: is each active channel still able to receive and send?

Three things are looked at per channel, each an *item*:

* **token** — ``debug_token`` (asked with the app token ``META_APP_ID|meta.app_secret``):
  a token Meta calls invalid is ``token_invalid`` (and flags the channel ``needs_reauth``
  with ``crm.channel.needs_reauth``, once per flip, as a refused reply does); one expiring
  within ``CHANNEL_TOKEN_WARNING_DAYS`` is ``token_expiring``; no token at all is
  ``token_missing``. Without app credentials only validity is known, from the next call.
* **subscription** — ``subscribed_apps`` with the page token: no app, or not ours
  (``META_APP_ID``), or ours without the ``messages`` field is ``not_subscribed``: no
  webhook will come. Code 190 here is ``token_invalid`` too.
* **silence** — no webhook from the page for ``CHANNEL_SILENCE_HOURS`` counted in business
  hours (``business.hours``, ``business.timezone``) is ``no_webhooks``; a quiet weekend is
  not a problem.

Throttling and Meta being unreachable are not problems: that item is *unknown* this time,
its earlier problems are kept as they were, and the next tick asks again. Any other refusal
of a check is ``token_check_failed`` / ``subscription_check_failed`` with Meta's words.

Each channel is decided under its row lock. When the *set of problem codes* changes
(found, or gone) the change is announced once: a ``crm.channel.health_changed`` event
(``recovered`` when none is left) and a ``channel_health`` row in the system log, both with
ids derived from the channel, the codes and the check's time. Messages may be reworded at
every check (the hours of silence grow) without announcing anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import CrmSettings
from crm.graph import GraphClient, GraphError
from crm.models import Channel
from crm.settings.service import get_setting
from crm.sla import BusinessHours
from jggl_common.contracts import ChannelHealthProblem, utcnow
from jggl_common.logs import get_logger
from jggl_common.outbox import Outbox

from . import events
from . import repository as repo
from .tokens import PageTokens

__all__ = [
    "CHECKS",
    "CODES",
    "PROBLEM_CHANNELS",
    "ChannelHealth",
    "Finding",
    "HealthCounts",
    "Problem",
    "combine",
    "read_debug_token",
    "read_subscriptions",
    "silence",
]

log = get_logger(__name__)

Status = Literal["ok", "problem", "unknown"]
Item = Literal["token", "subscription", "silence"]

TOKEN_INVALID = "token_invalid"  # noqa: S105 - problem codes, not secrets
TOKEN_EXPIRING = "token_expiring"  # noqa: S105
TOKEN_MISSING = "token_missing"  # noqa: S105
TOKEN_CHECK_FAILED = "token_check_failed"  # noqa: S105
NOT_SUBSCRIBED = "not_subscribed"
SUBSCRIPTION_CHECK_FAILED = "subscription_check_failed"
NO_WEBHOOKS = "no_webhooks"

CODES: dict[str, Item] = {
    TOKEN_INVALID: "token",
    TOKEN_EXPIRING: "token",
    TOKEN_MISSING: "token",
    TOKEN_CHECK_FAILED: "token",
    NOT_SUBSCRIBED: "subscription",
    SUBSCRIPTION_CHECK_FAILED: "subscription",
    NO_WEBHOOKS: "silence",
}
"""Every problem code, in the order admins see them, with the item that finds it."""

# What admins read, as the check words it.
MISSING_TEXT = "No page access token is set for this channel (nor META_ACCESS_TOKEN): it cannot reply."
INVALID_TEXT = "Meta refuses the page access token{why}. Replies fail until a new token is set."
EXPIRING_TEXT = "The page access token expires on {when:%Y-%m-%d %H:%M} UTC ({left}); set a new one before then."
NOT_SUBSCRIBED_EMPTY = "No app receives this page's webhooks (subscribed_apps is empty): new messages will not arrive."
NOT_SUBSCRIBED_OTHER = "Our app ({app_id}) is not subscribed to this page's webhooks: new messages will not arrive."
NOT_SUBSCRIBED_FIELDS = "Our app is subscribed to this page without the messages field: new messages will not arrive."
CHECK_FAILED_TEXT = "Meta refused the {what} check: {error}."
NO_WEBHOOKS_TEXT = "No webhook from this page for {hours:.1f} business hours (the last one {since})."

CHECKS = Counter(
    "crm_channel_health_checks_total",
    "Channel health checks by outcome (ok, problem, or unknown when Meta could not be asked)",
    ["outcome"],
)
PROBLEM_CHANNELS = Gauge(
    "crm_channels_with_problems", "Active channels with a health problem, by problem code", ["problem"]
)


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with a channel: a stable code and a sentence for admins."""

    code: str
    message: str

    def as_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class Finding:
    """What one item of the check found; ``known`` False when Meta could not be asked."""

    item: Item
    problems: tuple[Problem, ...] = ()
    known: bool = True
    token_valid: bool | None = None
    """Whether Meta accepted the page token on this call (None: the call says nothing of it)."""
    expires_at: datetime | None = None
    expiry_known: bool = False


UNKNOWN_TOKEN = Finding("token", known=False)
UNKNOWN_SUBSCRIPTION = Finding("subscription", known=False)


def _days(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    if days < 1:
        return "in less than a day"
    whole = int(days + 0.5)
    return f"in {whole} day{'s' if whole != 1 else ''}"


def _meta_error(error: Any) -> str:
    if not isinstance(error, dict):
        return ""
    message = str(error.get("message") or "").strip()
    code = error.get("code")
    subcode = error.get("subcode") or error.get("error_subcode")
    parts = [f"code {code}"] if code is not None else []
    if subcode is not None:
        parts.append(f"subcode {subcode}")
    suffix = f" ({', '.join(parts)})" if parts else ""
    return f": {message}{suffix}" if message else suffix


def read_debug_token(data: dict[str, Any], now: datetime, warn_within: timedelta) -> Finding:
    """The token item from ``debug_token``'s ``data``."""
    if data.get("is_valid") is not True:
        message = INVALID_TEXT.format(why=_meta_error(data.get("error")))
        return Finding("token", (Problem(TOKEN_INVALID, message),), token_valid=False)
    raw = data.get("expires_at")
    expires = int(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else 0
    if expires <= 0:
        return Finding("token", token_valid=True, expires_at=None, expiry_known=True)
    at = datetime.fromtimestamp(expires, UTC)
    problems: tuple[Problem, ...] = ()
    if at - now <= warn_within:
        problems = (Problem(TOKEN_EXPIRING, EXPIRING_TEXT.format(when=at, left=_days(at - now))),)
    return Finding("token", problems, token_valid=True, expires_at=at, expiry_known=True)


def read_subscriptions(apps: Sequence[dict[str, Any]], app_id: str) -> Finding:
    """The subscription item from ``subscribed_apps``' list (``app_id`` empty: any app will do)."""
    if not apps:
        return Finding("subscription", (Problem(NOT_SUBSCRIBED, NOT_SUBSCRIBED_EMPTY),), token_valid=True)
    ours = [app for app in apps if not app_id or str(app.get("id")) == app_id]
    if not ours:
        problem = Problem(NOT_SUBSCRIBED, NOT_SUBSCRIBED_OTHER.format(app_id=app_id))
        return Finding("subscription", (problem,), token_valid=True)
    fields = ours[0].get("subscribed_fields")
    if isinstance(fields, list) and "messages" not in fields:
        return Finding("subscription", (Problem(NOT_SUBSCRIBED, NOT_SUBSCRIBED_FIELDS),), token_valid=True)
    return Finding("subscription", token_valid=True)


def refused(item: Item, exc: GraphError) -> Finding:
    """The item when Meta answered it with an error: unknown for throttling and outages."""
    if exc.is_transient:
        return Finding(item, known=False)
    if item == "subscription" and exc.is_auth:
        # The token is refused, so whether the page is subscribed cannot be known.
        message = INVALID_TEXT.format(why=f": {exc.message} (code {exc.code})")
        return Finding(item, (Problem(TOKEN_INVALID, message),), known=False, token_valid=False)
    what = "page token" if item == "token" else "webhook subscription"
    code = TOKEN_CHECK_FAILED if item == "token" else SUBSCRIPTION_CHECK_FAILED
    return Finding(item, (Problem(code, CHECK_FAILED_TEXT.format(what=what, error=exc)),))


def silence(
    last_webhook_at: datetime | None, connected_at: datetime, now: datetime, hours: BusinessHours, limit: timedelta
) -> Finding:
    """The silence item: business time since the page's last webhook (or since it was connected)."""
    since = last_webhook_at or connected_at
    silent = hours.seconds_between(since, now)
    if silent < limit.total_seconds():
        return Finding("silence")
    when = f"at {since.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if last_webhook_at else "never came"
    return Finding("silence", (Problem(NO_WEBHOOKS, NO_WEBHOOKS_TEXT.format(hours=silent / 3600, since=when)),))


def combine(previous: Iterable[dict[str, Any]], findings: Iterable[Finding]) -> tuple[Status, list[Problem]]:
    """The channel's status and problems: what the known items found, plus the earlier
    problems of the items that are unknown this time (kept until they can be checked)."""
    found: dict[str, Problem] = {}
    unknown: set[Item] = set()
    for finding in findings:
        if not finding.known:
            unknown.add(finding.item)
            continue
        for problem in finding.problems:
            found.setdefault(problem.code, problem)
    for raw in previous:
        code = str(raw.get("code"))
        if CODES.get(code) in unknown:
            found.setdefault(code, Problem(code, str(raw.get("message") or code)))
    order = list(CODES)
    problems = sorted(found.values(), key=lambda p: order.index(p.code) if p.code in order else len(order))
    if problems:
        return "problem", problems
    return ("unknown" if unknown else "ok"), problems


@dataclass
class HealthCounts:
    """What one run did: channels checked, with problems after it, and recovered by it."""

    checked: int = 0
    problems: int = 0
    recovered: int = 0

    def as_counts(self) -> dict[str, int]:
        return {"checked": self.checked, "problems": self.problems, "recovered": self.recovered}


@dataclass(frozen=True, slots=True)
class _Credentials:
    app_id: str
    app_secret: str | None


class ChannelHealth:
    """Checks every active channel against Meta and records what changed."""

    def __init__(
        self, outbox: Outbox, settings: CrmSettings, graph: GraphClient | None = None, *, concurrency: int = 4
    ) -> None:
        self._outbox = outbox
        self._settings = settings
        self._graph = graph
        self._tokens = PageTokens(settings)
        self._concurrency = concurrency
        self._warn = timedelta(days=settings.channel_token_warning_days)
        self._silence = timedelta(hours=settings.channel_silence_hours)

    async def run(
        self, hours: BusinessHours, *, now: datetime | None = None, correlation_id: str | None = None
    ) -> HealthCounts:
        """Check every active channel once (``now`` for tests; the real clock otherwise)."""
        async with self._outbox.transaction() as session:
            ids = await repo.active_channel_ids(session)
            credentials = _Credentials(self._settings.meta_app_id, await _app_secret(session, self._settings))
        counts = HealthCounts()
        if ids:
            if self._graph is not None:
                await self._check_all(self._graph, ids, credentials, hours, now, correlation_id, counts)
            else:
                graph = GraphClient.from_settings(self._settings)
                try:
                    await self._check_all(graph, ids, credentials, hours, now, correlation_id, counts)
                finally:
                    await graph.aclose()
        async with self._outbox.transaction() as session:
            per_code = await repo.problem_counts(session)
        for code in {*CODES, *per_code}:
            PROBLEM_CHANNELS.labels(code).set(per_code.get(code, 0))
        return counts

    async def _check_all(
        self,
        graph: GraphClient,
        ids: list[int],
        credentials: _Credentials,
        hours: BusinessHours,
        now: datetime | None,
        correlation_id: str | None,
        counts: HealthCounts,
    ) -> None:
        limit = asyncio.Semaphore(self._concurrency)

        async def one(channel_id: int) -> None:
            async with limit:
                await self._check(graph, channel_id, credentials, hours, now, correlation_id, counts)

        await asyncio.gather(*(one(channel_id) for channel_id in ids))

    async def _check(
        self,
        graph: GraphClient,
        channel_id: int,
        credentials: _Credentials,
        hours: BusinessHours,
        now: datetime | None,
        correlation_id: str | None,
        counts: HealthCounts,
    ) -> None:
        async with self._outbox.transaction() as session:
            channel = await repo.get_channel(session, channel_id)
            if channel is None or not channel.is_active:
                return
            token = self._tokens.token_for(channel.access_token_sealed)
            page_id = channel.external_id
        findings = await self._ask_meta(graph, page_id, token, credentials, now or utcnow())
        checked_at = now or utcnow()
        async with self._outbox.transaction() as session:
            channel = await repo.get_channel(session, channel_id, for_update=True)
            if channel is None or not channel.is_active:
                return
            findings.append(silence(channel.last_webhook_at, channel.created_at, checked_at, hours, self._silence))
            await self._record(session, channel, findings, checked_at, correlation_id, counts)

    async def _ask_meta(
        self, graph: GraphClient, page_id: str, token: str | None, credentials: _Credentials, now: datetime
    ) -> list[Finding]:
        if token is None:
            return [Finding("token", (Problem(TOKEN_MISSING, MISSING_TEXT),)), UNKNOWN_SUBSCRIPTION]
        try:
            subscription = read_subscriptions(await graph.subscribed_apps(page_id, token=token), credentials.app_id)
        except GraphError as exc:
            subscription = refused("subscription", exc)
        refusal = Finding("token", subscription.problems, token_valid=False)  # used when it refused the token
        if not (credentials.app_id and credentials.app_secret):
            # Validity alone, from the subscription call; the expiry needs the app's credentials.
            if subscription.token_valid is False:
                return [refusal, subscription]
            return [Finding("token", token_valid=True) if subscription.known else UNKNOWN_TOKEN, subscription]
        try:
            data = await graph.debug_token(token, app_id=credentials.app_id, app_secret=credentials.app_secret)
            token_finding = read_debug_token(data, now, self._warn)
        except GraphError as exc:
            token_finding = refused("token", exc)
        if subscription.token_valid is False and token_finding.token_valid is not False:
            token_finding = refusal  # debug_token said otherwise or could not say: the refusal stands
        return [token_finding, subscription]

    async def _record(
        self,
        session: AsyncSession,
        channel: Channel,
        findings: list[Finding],
        checked_at: datetime,
        correlation_id: str | None,
        counts: HealthCounts,
    ) -> None:
        assert channel.id is not None
        previous = list(channel.health_problems or [])
        status, problems = combine(previous, findings)
        counts.checked += 1
        CHECKS.labels(status).inc()
        channel.health_status = status
        channel.health_problems = [problem.as_json() for problem in problems]
        channel.health_checked_at = checked_at
        for finding in findings:
            if finding.expiry_known:
                channel.token_expires_at = finding.expires_at
        await self._reauth(session, channel, findings, problems, checked_at, correlation_id)
        session.add(channel)
        await session.flush()
        if problems:
            counts.problems += 1
        before = {str(raw.get("code")) for raw in previous}
        if before == {problem.code for problem in problems}:
            return
        recovered = not problems
        if recovered:
            counts.recovered += 1
        await events.announce_health_change(
            session,
            channel,
            [ChannelHealthProblem(code=p.code, message=p.message) for p in problems],
            [
                ChannelHealthProblem(code=str(raw.get("code")), message=str(raw.get("message") or ""))
                for raw in previous
            ],
            checked_at,
            correlation_id,
        )
        log.warning(
            "channel health changed" if problems else "channel recovered",
            channel_id=channel.id,
            platform=channel.platform,
            external_id=channel.external_id,
            problems=[p.code for p in problems],
            previous=sorted(before),
        )

    async def _reauth(
        self,
        session: AsyncSession,
        channel: Channel,
        findings: list[Finding],
        problems: list[Problem],
        checked_at: datetime,
        correlation_id: str | None,
    ) -> None:
        """Flip ``needs_reauth`` the way a refused or a delivered reply does."""
        # Imported here: the sender imports this package's tokens module.
        from crm.outbound import events as reply_events
        from crm.outbound import repository as replies

        assert channel.id is not None
        verdicts = [finding.token_valid for finding in findings if finding.token_valid is not None]
        if False in verdicts:
            said = next((p.message for p in problems if p.code == TOKEN_INVALID), "Meta refused the page token.")
            if await replies.flag_needs_reauth(session, channel.id):
                channel.needs_reauth = True
                await reply_events.stage_needs_reauth(
                    session,
                    channel,
                    code=190,
                    subcode=None,
                    error=said,
                    cause=f"health:{checked_at.isoformat()}",
                    correlation=correlation_id,
                )
        elif verdicts and channel.needs_reauth:
            await replies.clear_needs_reauth(session, channel.id)
            channel.needs_reauth = False


async def _app_secret(session: AsyncSession, settings: CrmSettings) -> str | None:
    state = await get_setting(session, settings, "meta.app_secret")
    return state.value
