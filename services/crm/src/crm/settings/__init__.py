"""Runtime settings: admin overrides of the environment's defaults, encrypted at rest,
audited, and kept live in every service through the settings bucket."""

from .service import effective_value
from .sync import SettingsSync, settings_sync_lifespan

__all__ = ["SettingsSync", "effective_value", "settings_sync_lifespan"]
