"""Customer profile enrichment from the Graph API."""

from .enricher import Outcome, ProfileEnricher

__all__ = ["Outcome", "ProfileEnricher"]
