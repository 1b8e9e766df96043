"""Replies to customers: the managers' API and commands queue them, the sender delivers
them through Meta's Send API; echoes of what was sent are matched back to them by the
inbound consumer through :mod:`crm.conversation.replies`.
"""
