"""Replies to customers: the managers' API and commands queue them, the sender delivers
them through Meta's Send API, and echoes of what was sent are matched back to them.

Modules import each other lazily where the inbound consumer is involved (it matches
echoes through :mod:`crm.outbound.echoes`), so this package's ``__init__`` stays empty.
"""
