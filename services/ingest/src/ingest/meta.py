"""Meta webhook parsing for ingest: the signature check and the split of a POST into one
event per item live in :mod:`jggl_common.meta` (crm's tests read simulated webhooks with
the same code); ingest uses them from here."""

from __future__ import annotations

from jggl_common.meta import MalformedWebhook, meta_ms, split_webhook, verify_signature

__all__ = ["MalformedWebhook", "meta_ms", "split_webhook", "verify_signature"]
