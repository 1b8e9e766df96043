"""The sales pipeline: its stages and the board of open deals."""
