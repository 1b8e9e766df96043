"""JGGL CRM notifier service."""
