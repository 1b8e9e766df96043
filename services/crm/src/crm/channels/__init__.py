"""Channels: the connected Facebook Pages and Instagram accounts — their page tokens, the
admins' API over them (``/api/channels``) and the health check the scheduler runs
(token validity and expiry, the webhook subscription, pages gone silent).

The sender and the profile fetcher open page tokens through :mod:`crm.channels.tokens`,
so this package's ``__init__`` imports nothing (no import cycle through them).
"""
