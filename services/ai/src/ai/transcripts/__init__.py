"""ai's own projection of every conversation, built from crm's message events."""
