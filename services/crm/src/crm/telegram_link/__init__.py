"""Linking a user's Telegram to their CRM account with a one-time code."""
