"""JGGL CRM scheduler service."""
