"""Page access tokens: sealed at rest, opened only to call Meta.

A channel's own token is sealed with the ``settings`` purpose of ``APP_KEY`` (the same
box as secret settings); a channel without one uses ``META_ACCESS_TOKEN``. The sender and
the health check open tokens here, so both use the token Meta actually sees.
"""

from __future__ import annotations

from crm.config import CrmSettings
from crm.settings.service import settings_box
from jggl_common.crypto import DecryptionError
from jggl_common.logs import get_logger

__all__ = ["PageTokens"]

log = get_logger(__name__)


class PageTokens:
    """Seals a channel's page token and finds the token to call Meta with."""

    def __init__(self, settings: CrmSettings) -> None:
        self._box = settings_box(settings.app_keys)  # APP_KEY_PREVIOUS opens tokens sealed before a rotation
        self._default = settings.meta_access_token or None

    def seal(self, token: str) -> str:
        """The form ``channels.access_token_sealed`` stores."""
        return self._box.seal(token)

    def token_for(self, sealed: str | None) -> str | None:
        """The channel's own page token, else the configured default one (None: neither)."""
        if sealed:
            try:
                return self._box.open(sealed)
            except DecryptionError:
                log.error("cannot decrypt the channel's page token; using META_ACCESS_TOKEN")
        return self._default
