"""Live events for the web app: crm's own events from the ``CRM`` stream as Server-Sent Events."""
