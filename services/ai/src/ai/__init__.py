"""JGGL CRM ai service."""
