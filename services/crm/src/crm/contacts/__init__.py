"""Customers, as each channel knows them."""
