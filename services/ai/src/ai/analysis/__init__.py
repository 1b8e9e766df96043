"""Analysing a transcript: the prompt, Gemini, the heuristic, and the limits around them."""
