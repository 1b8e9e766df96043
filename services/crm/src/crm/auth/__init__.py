"""Who is calling: passwords, tokens, login throttling and the first admin."""
