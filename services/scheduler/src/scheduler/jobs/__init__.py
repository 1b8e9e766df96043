"""Jobs: their schedules, the built-in definitions, their fires and outcomes."""
