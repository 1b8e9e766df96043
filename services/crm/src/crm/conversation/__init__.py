"""A customer's conversation with a page, as every part of crm that writes to it sees it.

:mod:`.rules` holds its rules as pure functions (which deal a message belongs to,
response tracking, first-touch lead source, newest-wins reactions, the first stage, how
a message reads in a list); :mod:`.repository` its lock, its touch, the recompute of its
deals, the one reader of a deal with its contact and stage and the one loader of a
message; :mod:`.replies` recognises our replies in Meta's echoes and announces a sent
reply. The inbound consumer, the replies (``crm.outbound``) and profile fetching use it
and never import one another (import-linter keeps it so).
"""
