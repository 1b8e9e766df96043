"""What the AI service concluded about each deal's conversation, kept on the deal:
the newest analysis wins, the timeline shows each one, a deal turning hot is announced."""

from .service import AnalysisService
from .subscribers import register

__all__ = ["AnalysisService", "register"]
