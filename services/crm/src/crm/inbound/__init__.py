"""The consumer of ingest's Meta items: contacts, conversations, messages and deals."""

from .items import InvalidMetaItem
from .service import HandleResult, InboundService

__all__ = ["HandleResult", "InboundService", "InvalidMetaItem"]
