"""The people who log in: admins and managers."""
