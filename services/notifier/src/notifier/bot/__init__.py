"""The aiogram bot: a router per feature, fed the updates ingest stored (webhook mode)."""

from __future__ import annotations

from aiogram import Dispatcher

from notifier.bot import account, actions, deals, fallback, linking, preferences
from notifier.business_time import BusinessClock
from notifier.store import Store

__all__ = ["make_dispatcher"]


def make_dispatcher(store: Store, clock: BusinessClock | None = None) -> Dispatcher:
    """A dispatcher with the routers in order (the catch-all last); handlers get ``store``
    and ``clock`` (the business time zone)."""
    dp = Dispatcher()
    dp["store"] = store
    dp["clock"] = clock or BusinessClock()
    dp.include_routers(
        linking.make_router(),
        account.make_router(),
        deals.make_router(),
        preferences.make_router(),  # its commands come before a reply being written (actions)
        actions.make_router(),
        fallback.make_router(),
    )
    return dp
