"""JGGL CRM crm service."""
