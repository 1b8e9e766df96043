"""Team statistics: each manager's replies and response times, and the pipeline funnel."""
