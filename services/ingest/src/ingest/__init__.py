"""JGGL CRM ingest service."""
