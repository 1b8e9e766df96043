"""Full-text search over deals."""
