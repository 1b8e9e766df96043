"""The local analyser that answers while Gemini cannot: keywords, recency and response times.

It is deliberately simple and always available. Its results are marked ``heuristic`` and
replaced by Gemini's once Gemini answers again.
"""

from __future__ import annotations

import re
import statistics
from datetime import datetime, timedelta

from jggl_common.contracts import AnalysisResult, Intent, ManagerNotes, Temperature

from .transcript import Line, Transcript

__all__ = ["analyse", "detect_intent", "detect_language"]

# First match wins, in this order: a complaint that mentions a price is a complaint.
_INTENT_WORDS: tuple[tuple[Intent, tuple[str, ...]], ...] = (
    ("spam", ("casino", "crypto", "bitcoin", "earn money", "казино", "крипт", "заработок")),
    (
        "complaint",
        ("complain", "broken", "refund", "damaged", "terrible", "жалоб", "возврат", "сломан", "брак", "ужасн"),
    ),
    ("purchase", ("buy", "order", "i'll take", "checkout", "купить", "куплю", "заказ", "беру", "оформ")),
    ("price", ("price", "cost", "how much", "discount", "цена", "цену", "стоимост", "сколько стоит", "скидк", "почём")),
    ("availability", ("in stock", "available", "size", "в наличии", "наличи", "есть ли", "размер")),
    ("delivery", ("deliver", "shipping", "courier", "pickup", "доставк", "курьер", "самовывоз", "отправк")),
    ("support", ("help", "problem", "doesn't work", "how to", "помощ", "помоги", "проблем", "не работает", "как ")),
)
_NEXT_ACTION: dict[Intent, tuple[str, str]] = {
    "purchase": (
        "Confirm the order details and send payment and delivery options.",
        "Подтвердите заказ и пришлите способы оплаты и доставки.",
    ),
    "price": (
        "Send the price with what is included and propose to place an order.",
        "Назовите цену, что в неё входит, и предложите оформить заказ.",
    ),
    "availability": (
        "Confirm availability and offer to reserve the item.",
        "Подтвердите наличие и предложите забронировать товар.",
    ),
    "delivery": (
        "Explain delivery options, times and costs.",
        "Расскажите о вариантах, сроках и стоимости доставки.",
    ),
    "complaint": (
        "Apologise, find out what went wrong and offer a solution today.",
        "Извинитесь, выясните, что случилось, и предложите решение сегодня.",
    ),
    "support": (
        "Answer the question and check that the customer is helped.",
        "Ответьте на вопрос и уточните, решена ли проблема.",
    ),
    "spam": (
        "No action: mark the deal as lost (spam).",
        "Ничего не делать: закройте сделку как спам.",
    ),
    "other": (
        "Ask what the customer is looking for.",
        "Уточните, что ищет клиент.",
    ),
}
_CYRILLIC = re.compile(r"[А-Яа-яЁё]")
_LATIN = re.compile(r"[A-Za-z]")


def detect_language(texts: list[str]) -> str:
    """``ru`` when the customer writes mostly in Cyrillic, else ``en``."""
    joined = " ".join(texts)
    return "ru" if len(_CYRILLIC.findall(joined)) > len(_LATIN.findall(joined)) else "en"


def detect_intent(texts: list[str]) -> Intent:
    """The first intent whose keywords appear in the customer's text."""
    joined = " ".join(texts).lower()
    for intent, words in _INTENT_WORDS:
        if any(word in joined for word in words):
            return intent
    return "other"


def _temperature(intent: Intent, last_customer_at: datetime | None, now: datetime) -> Temperature:
    recent = last_customer_at is not None and now - last_customer_at <= timedelta(days=1)
    if intent == "purchase":
        return "hot" if recent else "warm"
    if intent in ("price", "availability", "delivery"):
        return "warm" if recent else "cold"
    return "cold"


def _response_times(lines: tuple[Line, ...]) -> list[float]:
    """Seconds from each customer's first unanswered message to the next reply."""
    waits: list[float] = []
    waiting_since: datetime | None = None
    for line in lines:
        if line.from_customer:
            waiting_since = waiting_since or line.sent_at
        elif waiting_since is not None:
            waits.append((line.sent_at - waiting_since).total_seconds())
            waiting_since = None
    return waits


def _score(waits: list[float]) -> int | None:
    if not waits:
        return None
    median = statistics.median(waits)
    for limit, score in ((300, 9), (1800, 7), (7200, 5), (86400, 3)):
        if median <= limit:
            return score
    return 1


def _speed_note(waits: list[float], ru: bool) -> str:
    if not waits:
        return "Ответа ещё не было." if ru else "Nobody has replied yet."
    minutes = round(statistics.median(waits) / 60)
    return f"Медианное время ответа: {minutes} мин." if ru else f"Median response time: {minutes} min."


def analyse(transcript: Transcript, now: datetime) -> AnalysisResult:
    """A heuristic analysis of ``transcript`` as of ``now``."""
    customer = [line for line in transcript.lines if line.from_customer]
    texts = [line.text for line in customer if line.text]
    ru = detect_language(texts) == "ru"
    intent = detect_intent(texts)
    waits = _response_times(transcript.lines)
    last = next((line for line in reversed(customer) if line.text), None)
    quoted = (last.text or "")[:160] if last else ""
    count = len(transcript.lines)
    if ru:
        summary = (
            f"{count} сообщ.; последнее сообщение клиента: «{quoted}»." if quoted else f"{count} сообщ. без текста."
        )
        not_assessed = "Эвристика этого не оценивает."
    else:
        summary = (
            f"{count} messages; the customer last wrote: “{quoted}”." if quoted else f"{count} messages without text."
        )
        not_assessed = "Not assessed by the heuristic."
    return AnalysisResult(
        summary=summary[:2000],
        intent=intent,
        temperature=_temperature(intent, customer[-1].sent_at if customer else None, now),
        manager_score=_score(waits),
        manager_notes=ManagerNotes(
            speed=_speed_note(waits, ru),
            politeness=not_assessed,
            needs_discovery=not_assessed,
            next_step=not_assessed,
        ),
        next_action=_NEXT_ACTION[intent][1 if ru else 0],
        language="ru" if ru else "en",
    )
