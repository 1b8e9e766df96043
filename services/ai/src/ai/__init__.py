"""ai: reads every conversation from crm's events and writes what Gemini (or, while it is
out, a local heuristic) concludes about it: summary, intent, lead temperature and how
well the manager handled it."""
