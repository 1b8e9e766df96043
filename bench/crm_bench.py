"""Deal list, search, pipeline board and contact search latency on a large generated CRM.

Creates a scratch database (``BENCH_DB``, dropped and created again), migrates crm's
schema into it, generates channels, contacts, conversations and deals in SQL (realistic
names in Cyrillic and Latin script, messages in several languages, comments, AI
summaries, amounts, stages, statuses and assignees), then times the managers' HTTP API
in-process (the real app over ``httpx.ASGITransport``: routing, auth, the queries and
the JSON) as an admin and as managers.

What the data looks like (1,000,000 deals by default):
- 6 channels (3 Facebook Pages, 3 Instagram accounts); one contact and one conversation
  per customer, one customer in 20 came back for a second (closed) deal;
- names: Russian/Ukrainian (Cyrillic), Western (Latin), and on the Kazakhstan Instagram
  account Kazakh names; some contacts have only a username, some nothing. "Иван" and
  "Иванов(а)" are deliberately frequent, so "иван" is a very broad search;
- two years of deals, older ones mostly closed (won/lost), recent ones mostly open;
- 40 managers on the main channels plus a Kazakhstan team of 10 who get every deal of
  that account assigned at once; on the other channels many new leads and some old lost
  ones are unassigned. So a main-team manager sees none of the "Ай…" contacts.

Personas: "admin"; "manager", the main-team manager with the most deals (about 4% of
all, plus the unassigned ones); "new manager", who joined today and sees only the
unassigned deals. Each query runs once cold (the first call in this process, reported
apart) and then ``BENCH_QUERIES`` times warm (or until ``BENCH_SECONDS_PER_QUERY`` are
used up); p50, p95 and p99 are printed per query and persona, next to the floor of an
authenticated request (``GET /api/me``) that every figure includes.

Environment: BENCH_DEALS (1000000), BENCH_QUERIES (40), BENCH_SECONDS_PER_QUERY (15),
BENCH_PG (postgresql://postgres@127.0.0.1:5432), BENCH_DB (jggl_crm_bench), BENCH_REDIS_URL,
BENCH_REUSE (1: keep an existing generated database, only creating indexes the models
have and it lacks), BENCH_ONLY (comma-separated substrings of query names to run),
BENCH_JSON (a file to append this run's figures to, one JSON object per line).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.schema import CreateIndex

from crm.api import create_app
from crm.config import CrmSettings
from crm.migrate import upgrade
from crm.models import metadata
from jggl_common.db import create_engine, ensure_schema

DEALS = int(os.environ.get("BENCH_DEALS", "1000000"))
QUERIES = int(os.environ.get("BENCH_QUERIES", "40"))
SECONDS_PER_QUERY = float(os.environ.get("BENCH_SECONDS_PER_QUERY", "15"))
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
DB = os.environ.get("BENCH_DB", "jggl_crm_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
REUSE = os.environ.get("BENCH_REUSE", "") not in ("", "0")
JSON_OUT = os.environ.get("BENCH_JSON", "")
ONLY = [part.strip() for part in os.environ.get("BENCH_ONLY", "").split(",") if part.strip()]
SCHEMA = "crm"
APP_KEY = base64.b64encode(hashlib.sha256(b"crm bench").digest()).decode()

MAIN_MANAGERS = 40  # user ids 2..41
KZ_MANAGERS = 10  # user ids 42..51
NEW_MANAGER_ID = 52  # joined the main team today: no deals of their own yet


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------ vocabulary

_TRANSLIT = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh", "з": "z", "и": "i", "й": "y", "к": "k",
    "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts",
    "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu", "я": "ya", "і": "i", "ї": "yi", "є": "ye",
    "ґ": "g", "ә": "a", "ғ": "g", "қ": "k", "ң": "n", "ө": "o", "ұ": "u", "ү": "u", "һ": "h",
}  # fmt: skip


def translit(word: str) -> str:
    """A Latin spelling of a Cyrillic word, as people pick for usernames."""
    return "".join(_TRANSLIT.get(ch, ch) for ch in word.lower())


# (name, weight): weights are relative within a list.
RU_MALE = [
    ("Иван", 40), ("Александр", 14), ("Сергей", 12), ("Дмитрий", 11), ("Андрей", 10), ("Алексей", 10),
    ("Максим", 9), ("Евгений", 7), ("Владимир", 7), ("Михаил", 7), ("Николай", 5), ("Павел", 5),
    ("Артём", 5), ("Никита", 4), ("Роман", 4), ("Олег", 4), ("Виктор", 3), ("Денис", 3), ("Игорь", 3),
    ("Кирилл", 3), ("Антон", 3), ("Тарас", 2), ("Богдан", 2), ("Юрий", 2), ("Григорий", 1), ("Святослав", 1),
]  # fmt: skip
RU_FEMALE = [
    ("Анна", 12), ("Мария", 11), ("Елена", 10), ("Ольга", 9), ("Наталья", 8), ("Татьяна", 7),
    ("Екатерина", 7), ("Ирина", 6), ("Светлана", 5), ("Юлия", 5), ("Марина", 5), ("Дарья", 4),
    ("Анастасия", 4), ("Ксения", 3), ("Виктория", 3), ("Полина", 3), ("Оксана", 3), ("Людмила", 2),
    ("Надежда", 2), ("Вера", 2), ("Галина", 2), ("Алёна", 2), ("Софья", 2), ("Олеся", 1), ("Злата", 1),
]  # fmt: skip
# (male form, female form, weight)
RU_LAST = [
    ("Иванов", "Иванова", 30), ("Петров", "Петрова", 8), ("Смирнов", "Смирнова", 8), ("Кузнецов", "Кузнецова", 7),
    ("Попов", "Попова", 6), ("Васильев", "Васильева", 6), ("Соколов", "Соколова", 5), ("Михайлов", "Михайлова", 5),
    ("Новиков", "Новикова", 5), ("Фёдоров", "Фёдорова", 4), ("Морозов", "Морозова", 4), ("Волков", "Волкова", 4),
    ("Алексеев", "Алексеева", 4), ("Лебедев", "Лебедева", 4), ("Семёнов", "Семёнова", 3), ("Егоров", "Егорова", 3),
    ("Павлов", "Павлова", 3), ("Козлов", "Козлова", 3), ("Степанов", "Степанова", 3), ("Николаев", "Николаева", 3),
    ("Орлов", "Орлова", 3), ("Макаров", "Макарова", 2), ("Зайцев", "Зайцева", 2), ("Соловьёв", "Соловьёва", 2),
    ("Белов", "Белова", 2), ("Шевченко", "Шевченко", 3), ("Бондаренко", "Бондаренко", 2), ("Коваленко", "Коваленко", 2),
    ("Ткаченко", "Ткаченко", 2), ("Кравченко", "Кравченко", 2), ("Мельник", "Мельник", 2), ("Ковальчук", "Ковальчук", 1),
    ("Рыбаков", "Рыбакова", 1), ("Добролюбов", "Добролюбова", 1), ("Завьялов", "Завьялова", 1),
    ("Вишневский", "Вишневская", 1), ("Полянский", "Полянская", 1), ("Тихомиров", "Тихомирова", 1),
]  # fmt: skip
LAT_FIRST = [
    ("John", 6), ("Michael", 5), ("David", 5), ("James", 4), ("Robert", 3), ("Thomas", 4), ("Daniel", 4),
    ("Peter", 3), ("Paul", 3), ("Mark", 3), ("Lukas", 3), ("Jan", 3), ("Piotr", 2), ("Carlos", 3), ("José", 3),
    ("Juan", 3), ("Luis", 2), ("Marco", 2), ("Ahmed", 2), ("Mohamed", 2), ("Ali", 2), ("Johannes", 1),
    ("Maria", 6), ("Anna", 5), ("Laura", 4), ("Sofia", 4), ("Emma", 4), ("Olivia", 3), ("Mia", 3), ("Lucia", 3),
    ("Ana", 3), ("Julia", 3), ("Katarzyna", 2), ("Fatima", 2), ("Chloé", 2), ("Hannah", 2), ("Joanna", 1),
]  # fmt: skip
LAT_LAST = [
    ("Smith", 6), ("Johnson", 5), ("Williams", 4), ("Brown", 4), ("Jones", 3), ("Garcia", 5), ("Martinez", 4),
    ("Rodriguez", 4), ("Lopez", 3), ("Hernandez", 3), ("Müller", 4), ("Schmidt", 3), ("Schneider", 2),
    ("Fischer", 2), ("Weber", 2), ("Kowalski", 3), ("Nowak", 3), ("Wiśniewski", 2), ("Rossi", 3), ("Russo", 2),
    ("Silva", 3), ("Santos", 3), ("Dubois", 2), ("Martin", 3), ("Bernard", 2), ("Jansen", 2), ("Novák", 2),
    ("Yilmaz", 2), ("Kaya", 1), ("O'Brien", 1), ("Johansson", 1),
]  # fmt: skip
KZ_MALE = [
    ("Айдар", 10), ("Айбек", 8), ("Айдос", 5), ("Айтуган", 2), ("Айбол", 3), ("Айсултан", 4), ("Айдын", 2),
    ("Нурлан", 6), ("Ерлан", 5), ("Асхат", 3), ("Данияр", 4), ("Арман", 4),
]  # fmt: skip
KZ_FEMALE = [
    ("Айгерим", 12), ("Айгуль", 9), ("Айжан", 7), ("Айдана", 7), ("Айым", 3), ("Айша", 5), ("Айнур", 4),
    ("Айсулу", 3), ("Асель", 5), ("Дана", 4), ("Жанар", 2), ("Камила", 3),
]  # fmt: skip
KZ_LAST = [
    ("Ахметов", "Ахметова", 6), ("Серикбаев", "Серикбаева", 4), ("Жумабаев", "Жумабаева", 4),
    ("Касымов", "Касымова", 4), ("Абдрахманов", "Абдрахманова", 3), ("Нурланов", "Нурланова", 3),
    ("Тулегенов", "Тулегенова", 3), ("Сейткали", "Сейткали", 2), ("Омаров", "Омарова", 3),
    ("Исмаилов", "Исмаилова", 2), ("Бекмуратов", "Бекмуратова", 2), ("Кенжебаев", "Кенжебаева", 2),
]  # fmt: skip

MESSAGES = [
    "Здравствуйте, сколько стоит доставка в Минск?", "Есть ли в наличии размер M?", "Хочу заказать две штуки",
    "Когда будет поступление?", "Спасибо, жду ответа", "Можно оплатить картой при получении?",
    "Какая гарантия на товар?", "Пришлите, пожалуйста, фото в другом цвете", "Добрый день! Актуально?",
    "А скидка для постоянных клиентов есть?", "Меня зовут Иван, я по поводу заказа", "Доставка в Москву сколько дней?",
    "Подскажите, есть самовывоз?", "Оформите, пожалуйста, заказ на завтра", "Не пришёл трек-номер",
    "Доброго дня, яка ціна?", "Чи є доставка до Києва?", "Дякую, чекаю на відповідь", "Можна оплатити частинами?",
    "Hi, is this still available?", "What is the price with delivery?", "Can you ship to Berlin?",
    "Thanks, I will think about it", "Do you have it in black?", "Is there a warranty?", "Please send the invoice",
    "Hola, ¿cuánto cuesta el envío?", "¿Tienen talla L?", "Gracias, lo pienso", "¿Hacen envíos a Madrid?",
    "Hallo, ist das noch verfügbar?", "Wie lange dauert der Versand?", "Danke, ich melde mich",
    "Dzień dobry, ile kosztuje wysyłka?", "Czy jest dostępny rozmiar S?",
    "Сәлеметсіз бе, бағасы қанша?", "Жеткізу бар ма?", "Рахмет, күтемін", "Алматыға жеткізу қанша тұрады?",
    "[фото]", "[voice message]", "👍", "ок", "Спасибо!",
]  # fmt: skip
COMMENTS = [
    "Перезвонить в понедельник", "Клиент просит скидку 10%", "prefers wholesale pricing", "VIP клиент",
    "Отправили счёт, ждём оплату", "Ждёт поступления на склад", "Не отвечает на звонки", "Hat nach Rabatt gefragt",
    "Оптовый покупатель, интересует прайс", "Доставка курьером, адрес в переписке", "Просит рассрочку",
    "Wants delivery before Friday", "Повторный клиент", "Сравнивает с конкурентами", "Uzgodniono dostawę na wtorek",
    "Оплата по безналу, нужен договор", "Передать Марине", "Reklamacja — uszkodzona paczka",
]  # fmt: skip
SUMMARIES = [
    "Клиент интересуется доставкой и ценой, готов купить на этой неделе",
    "Клиент спрашивает про гарантию и возврат, сомневается",
    "Покупатель сравнивает цены с конкурентами и просит скидку",
    "Клиент жалуется на задержку доставки, нужен трек-номер",
    "Оптовый запрос: нужен прайс и условия для юрлица",
    "Клиент уточняет наличие размера и цвета",
    "Customer asks about availability in size M and delivery time",
    "Customer wants a bulk discount for a corporate order",
    "Customer is unhappy with the delay and asks for a refund",
    "Customer asks whether the product has a warranty",
    "Cliente pregunta por el precio del envío a Madrid",
    "Kunde fragt nach Lieferzeit und Rabatt",
    "Клієнт питає про доставку до Києва та оплату частинами",
    "Клиент готов оформить заказ, ждёт счёт",
]
INTENTS = ["purchase", "price", "delivery", "availability", "complaint", "support", "other"]


def _expand(pairs: list[tuple[str, int]]) -> list[str]:
    return [name for name, weight in pairs for _ in range(weight)]


def _expand_last(rows: list[tuple[str, str, int]]) -> tuple[list[str], list[str]]:
    males = [male for male, _, weight in rows for _ in range(weight)]
    females = [female for _, female, weight in rows for _ in range(weight)]
    return males, females


# ------------------------------------------------------------------ generation


async def _admin_connection() -> asyncpg.Connection:
    return await asyncpg.connect(f"{PG}/postgres")


async def _bench_connection() -> asyncpg.Connection:
    return await asyncpg.connect(f"{PG}/{DB}", server_settings={"search_path": f"{SCHEMA},public"})


async def _exists() -> bool:
    admin = await _admin_connection()
    try:
        return bool(await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DB))
    finally:
        await admin.close()


async def _recreate_database() -> None:
    admin = await _admin_connection()
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DB}"')
    finally:
        await admin.close()


async def _migrate(engine: AsyncEngine) -> None:
    await ensure_schema(engine, SCHEMA)
    await upgrade(engine, SCHEMA)


async def _create_missing_indexes(engine: AsyncEngine) -> None:
    """Indexes the models declare that the kept database lacks (after a model change)."""
    async with engine.begin() as conn:
        existing = {
            row[0]
            for row in (
                await conn.execute(text("SELECT indexname FROM pg_indexes WHERE schemaname = :s"), {"s": SCHEMA})
            )
        }
        await conn.execute(text("SET maintenance_work_mem = '1GB'"))
        missing = [index for table in metadata.sorted_tables for index in table.indexes if index.name not in existing]
        for index in missing:
            progress(f"creating index {index.name} (the models gained it since the data was generated)")
            await conn.execute(CreateIndex(index))
        if missing:
            await conn.execute(text("ANALYZE"))


def _sql_array(values: list[str]) -> str:
    return "(ARRAY[" + ",".join("'" + value.replace("'", "''") + "'" for value in values) + "]::text[])"


async def _timed(conn: asyncpg.Connection, label: str, sql: str, *args: Any) -> None:
    start = time.perf_counter()
    await conn.execute(sql, *args)
    progress(f"  {label}: {time.perf_counter() - start:.1f}s")


async def generate(n_deals: int) -> None:
    """Fill the migrated schema with ``n_deals`` deals and what they hang on."""
    conn = await _bench_connection()
    try:
        await conn.execute(
            "SET session_replication_role = replica; SET synchronous_commit = off;"
            " SET work_mem = '256MB'; SET maintenance_work_mem = '1GB'; SET max_parallel_maintenance_workers = 2;"
            " SELECT setseed(0.42)"
        )
        # Load without secondary indexes (built once afterwards); triggers are off in
        # replica mode, so the search vector is computed here the way the trigger does.
        indexes = await conn.fetch(
            """
            SELECT indexname, indexdef FROM pg_indexes
            WHERE schemaname = $1 AND tablename IN ('contacts', 'conversations', 'deals')
              AND indexname NOT IN (SELECT conname FROM pg_constraint)
            """,
            SCHEMA,
        )
        for row in indexes:
            await conn.execute(f'DROP INDEX "{row["indexname"]}"')

        n_contacts = n_deals - n_deals // 20
        await conn.execute(
            """
            INSERT INTO users (id, email, name, password_hash, role, is_active, created_at, updated_at)
            SELECT 1, 'admin@bench.test', 'Admin', 'bench-not-a-hash', 'admin', true, now(), now()
            UNION ALL
            SELECT g, 'manager' || (g - 1) || '@bench.test', 'Manager ' || (g - 1), 'bench-not-a-hash',
                   'manager', true, now(), now()
            FROM generate_series(2, $1) g;
            """,
            NEW_MANAGER_ID,
        )
        await conn.execute(
            """
            INSERT INTO channels (id, platform, external_id, name, needs_reauth, is_active, created_at) VALUES
              (1, 'messenger', '100000000000001', 'Shop RU', false, true, now()),
              (2, 'messenger', '100000000000002', 'Shop EU', false, true, now()),
              (3, 'messenger', '100000000000003', 'Shop UA', false, true, now()),
              (4, 'instagram', '178400000000004', '@shop.ru', false, true, now()),
              (5, 'instagram', '178400000000005', '@shop.eu', false, true, now()),
              (6, 'instagram', '178400000000006', '@shop.kz', false, true, now())
            """
        )
        ru_m, ru_f = _expand(RU_MALE), _expand(RU_FEMALE)
        ru_last_m, ru_last_f = _expand_last(RU_LAST)
        kz_m, kz_f = _expand(KZ_MALE), _expand(KZ_FEMALE)
        kz_last_m, kz_last_f = _expand_last(KZ_LAST)
        lat_first, lat_last = _expand(LAT_FIRST), _expand(LAT_LAST)

        def pick(array: list[str], r: str) -> str:
            return f"{_sql_array(array)}[1 + floor({r} * {len(array)})::int]"

        def pick_lat(array: list[str], r: str) -> str:
            return pick([translit(name) for name in array], r)

        progress(f"generating {n_contacts:,} contacts and conversations")
        await _timed(
            conn,
            "random draws",
            """
            CREATE TEMP TABLE gc AS
            SELECT j AS id,
                   CASE WHEN r < 0.35 THEN 1 WHEN r < 0.50 THEN 2 WHEN r < 0.60 THEN 3
                        WHEN r < 0.75 THEN 4 WHEN r < 0.85 THEN 5 ELSE 6 END AS channel_id,
                   random() AS r_gender, random() AS r_first, random() AS r_last, random() AS r_kind,
                   random() AS r_user, random() AS r_seen,
                   -- the time of the contact's first deal (deal number j + (j - 1) / 19)
                   now() - interval '730 days' * (1 - (j + (j - 1) / 19)::float8 / $1) AS first_seen_at
            FROM (SELECT j, random() AS r FROM generate_series(1, $2) j) s
            """,
            n_deals,
            n_contacts,
        )
        ru_first = f"CASE WHEN r_gender < 0.5 THEN {pick(ru_m, 'r_first')} ELSE {pick(ru_f, 'r_first')} END"
        ru_first_lat = f"CASE WHEN r_gender < 0.5 THEN {pick_lat(ru_m, 'r_first')} ELSE {pick_lat(ru_f, 'r_first')} END"
        ru_last = f"CASE WHEN r_gender < 0.5 THEN {pick(ru_last_m, 'r_last')} ELSE {pick(ru_last_f, 'r_last')} END"
        ru_last_lat = pick_lat(ru_last_m, "r_last")
        kz_first = f"CASE WHEN r_gender < 0.5 THEN {pick(kz_m, 'r_first')} ELSE {pick(kz_f, 'r_first')} END"
        kz_first_lat = f"CASE WHEN r_gender < 0.5 THEN {pick_lat(kz_m, 'r_first')} ELSE {pick_lat(kz_f, 'r_first')} END"
        kz_last = f"CASE WHEN r_gender < 0.5 THEN {pick(kz_last_m, 'r_last')} ELSE {pick(kz_last_f, 'r_last')} END"
        kz_last_lat = pick_lat(kz_last_m, "r_last")
        lat_f, lat_l = pick(lat_first, "r_first"), pick(lat_last, "r_last")
        lat_f_user = f"lower(translate({lat_f}, 'éáíóúüöäńśłčćšžé''', 'eaiouuoanslccsze'))"
        lat_l_user = f"lower(translate({lat_l}, 'éáíóúüöäńśłčćšžé''', 'eaiouuoanslccsze'))"
        await _timed(
            conn,
            "contacts",
            f"""
            INSERT INTO contacts (id, channel_id, platform, external_id, name, username, profile_status,
                                  profile_fetched_at, profile_attempts, first_seen_at, last_seen_at)
            SELECT id, channel_id, CASE WHEN channel_id >= 4 THEN 'instagram' ELSE 'messenger' END,
                   (1000000000000000 + id * 7)::text,
                   CASE WHEN r_kind < 0.06 THEN NULL ELSE first || ' ' || last END,
                   CASE WHEN channel_id >= 4 AND r_user < 0.8 OR r_kind < 0.03
                        THEN first_user || CASE WHEN r_user < 0.4 THEN '.' ELSE '_' END || last_user
                             || CASE WHEN r_user < 0.6 THEN (id % 97)::text ELSE '' END
                   END,
                   CASE WHEN r_kind < 0.03 THEN 'failed' ELSE 'fetched' END, first_seen_at, 1,
                   first_seen_at, least(now(), first_seen_at + r_seen * interval '20 days')
            FROM (
                SELECT gc.*,
                       CASE WHEN channel_id IN (2, 5) OR channel_id IN (1, 4) AND r_kind > 0.9 THEN {lat_f}
                            WHEN channel_id = 6 THEN {kz_first} ELSE {ru_first} END AS first,
                       CASE WHEN channel_id IN (2, 5) OR channel_id IN (1, 4) AND r_kind > 0.9 THEN {lat_l}
                            WHEN channel_id = 6 THEN {kz_last} ELSE {ru_last} END AS last,
                       CASE WHEN channel_id IN (2, 5) OR channel_id IN (1, 4) AND r_kind > 0.9 THEN {lat_f_user}
                            WHEN channel_id = 6 THEN {kz_first_lat} ELSE {ru_first_lat} END AS first_user,
                       CASE WHEN channel_id IN (2, 5) OR channel_id IN (1, 4) AND r_kind > 0.9 THEN {lat_l_user}
                            WHEN channel_id = 6 THEN {kz_last_lat} ELSE {ru_last_lat} END AS last_user
                FROM gc
            ) s
            """,
        )
        await _timed(
            conn,
            "conversations",
            """
            INSERT INTO conversations (id, channel_id, contact_id, last_message_at, last_inbound_at, created_at)
            SELECT id, channel_id, id, last_seen_at, last_seen_at, first_seen_at FROM contacts
            """,
        )

        progress(f"generating {n_deals:,} deals")
        await _timed(
            conn,
            "random draws",
            """
            CREATE TEMP TABLE gd AS
            SELECT i AS id,
                   CASE WHEN i % 20 = 0 THEN 1 + floor(random() * (i - i / 20))::int ELSE i - i / 20 END AS contact_id,
                   i % 20 = 0 AS is_repeat,
                   1 - i::float8 / $1 AS age,
                   now() - interval '730 days' * (1 - i::float8 / $1) AS created_at,
                   random() AS r_status, random() AS r_stage, random() AS r_assign, random() AS r_mgr,
                   random() AS r_amount, random() AS r_comment, random() AS r_msg, random() AS r_ai,
                   random() AS r_ai2, random() AS r_time, random() AS r_misc
            FROM generate_series(1, $1) i
            """,
            n_deals,
        )
        messages, comments, summaries = _sql_array(MESSAGES), _sql_array(COMMENTS), _sql_array(SUMMARIES)
        intents = _sql_array(INTENTS)
        await _timed(
            conn,
            "deal attributes",
            """
            CREATE TEMP TABLE gd2 AS
            SELECT gd.id, gd.contact_id, c.channel_id, c.platform, c.name AS contact_name, c.username,
                   gd.created_at, gd.r_assign, gd.r_mgr, gd.r_amount, gd.r_comment, gd.r_msg, gd.r_ai, gd.r_ai2,
                   gd.r_time, gd.r_misc, gd.r_stage,
                   CASE WHEN NOT gd.is_repeat AND gd.r_status < p_open THEN 'open'
                        WHEN (gd.r_status - p_open) / (1 - p_open) < 0.3 THEN 'won' ELSE 'lost' END AS status
            FROM (
                SELECT gd.*, CASE WHEN age < 0.03 THEN 0.9 WHEN age < 0.15 THEN 0.35 ELSE 0.03 END AS p_open
                FROM gd
            ) gd
            JOIN contacts c ON c.id = gd.contact_id
            """,
        )
        stage_ids = [row["id"] for row in await conn.fetch("SELECT id FROM stages ORDER BY position, id")]
        s = stage_ids + [stage_ids[-1]] * (5 - len(stage_ids))
        await _timed(
            conn,
            "deals",
            f"""
            INSERT INTO deals (id, conversation_id, contact_id, channel_id, platform, stage_id, status, lost_reason,
                               amount, comment, assignee_id, lead_source, ai_summary, ai_intent, ai_temperature,
                               ai_score, ai_source, ai_analyzed_at, awaiting_reply_since, first_response_seconds,
                               first_response_at, last_message_text, last_message_at, created_at, updated_at,
                               closed_at, search_vector)
            SELECT id, contact_id, contact_id, channel_id, platform, stage_id, status,
                   CASE WHEN status = 'lost' THEN (ARRAY['too expensive', 'no answer', 'bought elsewhere'])
                        [1 + floor(r_misc * 3)::int] END,
                   amount, comment, assignee_id, lead_source, ai_summary, ai_intent, ai_temperature, ai_score,
                   ai_source, ai_analyzed_at,
                   CASE WHEN status = 'open' AND r_time < 0.35 THEN last_message_at END,
                   first_response_seconds, created_at + make_interval(secs => first_response_seconds),
                   last_message_text, last_message_at, created_at,
                   greatest(created_at, last_message_at, closed_at), closed_at,
                   setweight(to_tsvector('simple', coalesce(contact_name, '') || ' ' || coalesce(username, '')), 'A')
                   || setweight(to_tsvector('simple', coalesce(ai_summary, '') || ' ' || coalesce(ai_intent, '')), 'B')
                   || setweight(to_tsvector('simple', coalesce(comment, '') || ' ' || coalesce(last_message_text, '')),
                                'C')
                   || setweight(to_tsvector('simple', status), 'D')
            FROM (
                SELECT d.*,
                       CASE WHEN status = 'open' THEN
                                CASE WHEN r_stage < 0.35 THEN {s[0]} WHEN r_stage < 0.60 THEN {s[1]}
                                     WHEN r_stage < 0.78 THEN {s[2]} WHEN r_stage < 0.90 THEN {s[3]} ELSE {s[4]} END
                            WHEN status = 'won' THEN CASE WHEN r_stage < 0.4 THEN {s[3]} ELSE {s[4]} END
                            ELSE (ARRAY{s})[1 + floor(r_stage * 5)::int] END AS stage_id,
                       CASE WHEN channel_id = 6 THEN 2 + {MAIN_MANAGERS} + floor(r_mgr * {KZ_MANAGERS})::int
                            WHEN status = 'open' AND r_stage < 0.35 AND r_assign < 0.6 THEN NULL
                            WHEN status <> 'open' AND r_assign < 0.06 THEN NULL
                            ELSE 2 + floor(power(r_mgr, 1.25) * {MAIN_MANAGERS})::int END AS assignee_id,
                       CASE WHEN r_amount < 0.55 THEN round((20 + power(r_amount / 0.55, 2) * 5000)::numeric, 2)
                       END AS amount,
                       CASE WHEN r_comment < 0.25 THEN {comments}[1 + floor(r_comment / 0.25 * {len(COMMENTS)})::int]
                       END AS comment,
                       CASE WHEN r_misc < 0.7 THEN 'organic' WHEN r_misc < 0.95 THEN 'ads' ELSE 'shortlink' END
                           AS lead_source,
                       CASE WHEN r_ai < 0.4 THEN {summaries}[1 + floor(r_ai2 * {len(SUMMARIES)})::int] END
                           AS ai_summary,
                       CASE WHEN r_ai < 0.4 THEN {intents}[1 + floor(r_ai / 0.4 * {len(INTENTS)})::int] END
                           AS ai_intent,
                       CASE WHEN r_ai < 0.4 THEN (ARRAY['hot', 'warm', 'cold'])[1 + floor(r_ai2 * 3)::int] END
                           AS ai_temperature,
                       CASE WHEN r_ai < 0.4 THEN floor(r_time * 11)::int END AS ai_score,
                       CASE WHEN r_ai < 0.36 THEN 'gemini' WHEN r_ai < 0.4 THEN 'heuristic' END AS ai_source,
                       CASE WHEN r_ai < 0.4 THEN created_at + interval '1 hour' END AS ai_analyzed_at,
                       CASE WHEN r_msg < 0.96 THEN 60 + floor(r_time * 7200)::int END AS first_response_seconds,
                       CASE WHEN r_msg < 0.96 THEN
                           {messages}[1 + floor(r_msg / 0.96 * {len(MESSAGES)})::int]
                           || CASE WHEN r_misc < 0.15 THEN ' заказ ' || (100000 + id % 900000)::text ELSE '' END
                       END AS last_message_text,
                       CASE WHEN r_msg < 0.96 THEN least(now(), created_at + r_time * interval '3 days')
                       END AS last_message_at,
                       CASE WHEN status <> 'open' THEN least(now(), created_at + interval '2 days' + r_time
                                                              * interval '20 days') END AS closed_at
                FROM gd2 d
            ) x
            """,
        )
        for sequence, table in (
            ("users_id_seq", "users"),
            ("channels_id_seq", "channels"),
            ("contacts_id_seq", "contacts"),
            ("conversations_id_seq", "conversations"),
            ("deals_id_seq", "deals"),
        ):
            await conn.execute(f"SELECT setval('{sequence}', (SELECT max(id) FROM {table}))")
        await conn.execute("DROP TABLE gc; DROP TABLE gd; DROP TABLE gd2")
        # Triggers were off while generating: the pipeline totals are counted once, as
        # migration 0003 counts the deals that exist when it runs.
        await conn.execute(
            "INSERT INTO deal_totals (stage_id, status, bucket, deals, amount)"
            " SELECT stage_id, status, 0, count(*), coalesce(sum(amount), 0) FROM deals GROUP BY stage_id, status"
        )

        progress(f"building {len(indexes)} indexes")
        for row in indexes:
            await _timed(conn, row["indexname"], row["indexdef"])
        progress("vacuum and analyze")
        for table in ("users", "channels", "stages", "contacts", "conversations", "deals"):
            await _timed(conn, table, f"VACUUM (ANALYZE) {table}")
        await _check(conn)
    finally:
        await conn.close()


async def _check(conn: asyncpg.Connection) -> None:
    """The generated search vectors equal what the trigger writes (checked on a sample, rolled back)."""
    await conn.execute("SET session_replication_role = origin")
    sample = "SELECT id, search_vector::text AS v FROM deals WHERE id % 9973 = 0 ORDER BY id"
    transaction = conn.transaction()
    await transaction.start()
    try:
        before = [tuple(row) for row in await conn.fetch(sample)]
        await conn.execute("UPDATE deals SET contact_id = contact_id WHERE id % 9973 = 0")
        after = [tuple(row) for row in await conn.fetch(sample)]
    finally:
        await transaction.rollback()
    if before != after:
        raise SystemExit("generated search vectors differ from the ones the trigger writes")
    progress(f"  search vectors of {len(before)} sampled deals match the trigger's")
    differing = await conn.fetchval(
        "SELECT count(*) FROM ((SELECT stage_id, status, count(*), coalesce(sum(amount), 0) FROM deals GROUP BY 1, 2)"
        " EXCEPT (SELECT stage_id, status, sum(deals)::bigint, sum(amount) FROM deal_totals GROUP BY 1, 2"
        " HAVING sum(deals) <> 0)) AS missing"
    )
    if differing:
        raise SystemExit(f"the pipeline totals differ from the deals in {differing} (stage, status) pairs")
    progress("  pipeline totals match the deals")


async def describe() -> None:
    conn = await _bench_connection()
    try:
        stats = await conn.fetchrow(
            """
            SELECT (SELECT count(*) FROM deals) AS deals, (SELECT count(*) FROM contacts) AS contacts,
                   (SELECT count(*) FROM deals WHERE status = 'open') AS open,
                   (SELECT count(*) FROM deals WHERE assignee_id IS NULL) AS unassigned,
                   (SELECT count(*) FROM deals WHERE assignee_id = 2) AS manager1,
                   (SELECT count(*) FROM deals WHERE search_vector @@ to_tsquery('simple', 'иван:*')) AS ivan,
                   (SELECT count(*) FROM contacts WHERE lower(name) LIKE 'ай%') AS ai_contacts,
                   pg_size_pretty(pg_total_relation_size('deals')) AS deals_size
            """
        )
        progress(
            f"data: {stats['deals']:,} deals ({stats['open']:,} open, {stats['unassigned']:,} unassigned,"
            f" {stats['manager1']:,} of manager 1), {stats['contacts']:,} contacts;"
            f" 'иван' matches {stats['ivan']:,} deals, 'Ай…' {stats['ai_contacts']:,} contacts;"
            f" deals with indexes {stats['deals_size']}"
        )
    finally:
        await conn.close()


# ------------------------------------------------------------------ measuring


@dataclass
class Case:
    name: str
    path: str
    params: dict[str, Any]
    check: Callable[[dict[str, Any]], None] | None = None


def _nonempty(body: dict[str, Any]) -> None:
    if not body.get("items") and not body.get("stages"):
        raise SystemExit(f"empty answer: {str(body)[:200]}")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def measure() -> None:
    engine = create_engine(f"{PG}/{DB}", SCHEMA, pool_size=4)
    redis = Redis.from_url(REDIS_URL)
    settings = CrmSettings(
        app_key=APP_KEY,  # type: ignore[arg-type]
        nats_url="nats://127.0.0.1:4222",
        app_url="http://crm.bench",
        database_url=f"{PG}/{DB}",
        redis_url=REDIS_URL,
        db_schema=SCHEMA,
        admin_email="",
        admin_password="",
        # Every request is still checked by the API limiter (its cost is in the figures); none is refused.
        api_rate_per_minute=10**7,
        api_rate_burst=10**7,
    )
    app = create_app(settings, engine=engine, redis=redis)
    try:
        async with engine.connect() as conn:
            max_id = int((await conn.execute(text("SELECT max(id) FROM deals"))).scalar_one())
            middle = (await conn.execute(text("SELECT created_at FROM deals WHERE id = :i"), {"i": max_id // 2})).one()
            middle_lm = (
                await conn.execute(
                    text("SELECT last_message_at FROM deals WHERE id >= :i AND last_message_at IS NOT NULL LIMIT 1"),
                    {"i": max_id // 2},
                )
            ).one()
            users = {
                row.id: row
                for row in (
                    await conn.execute(
                        text("SELECT id, password_hash FROM users WHERE id IN (1, 2, :n)"), {"n": NEW_MANAGER_ID}
                    )
                )
            }
        state = app.state.crm

        def headers(user_id: int) -> dict[str, str]:
            user = users[user_id]
            return {"Authorization": f"Bearer {state.tokens.issue(user.id, user.password_hash)}"}

        deep_created = state.cursors.encode("deals:-created_at", [middle[0].isoformat(), max_id // 2])
        deep_last = state.cursors.encode("deals:-last_message_at", [middle_lm[0].isoformat(), max_id // 2])
        common = [
            Case("deals: default sort", "/api/deals", {}, _nonempty),
            Case("deals: stage=proposal", "/api/deals", {"stage": "proposal"}, _nonempty),
            Case("deals: status=open -last_message_at", "/api/deals", {"status": "open", "sort": "-last_message_at"}),
            Case("deals: -amount", "/api/deals", {"sort": "-amount"}, _nonempty),
            Case("deals: deep keyset page", "/api/deals", {"cursor": deep_created}, _nonempty),
            Case(
                "deals: deep page -last_message_at",
                "/api/deals",
                {"cursor": deep_last, "sort": "-last_message_at"},
                _nonempty,
            ),
            Case("search: 'Иван Петров' (name)", "/api/search", {"q": "Иван Петров"}, _nonempty),
            Case("search: 'иван' (broad)", "/api/search", {"q": "иван"}, _nonempty),
            Case("search: 'доставка' (message word)", "/api/search", {"q": "доставка"}, _nonempty),
            Case("search: 'joh' (Latin prefix)", "/api/search", {"q": "joh"}, _nonempty),
            Case("search: 'гарант' (AI summary)", "/api/search", {"q": "гарант"}, _nonempty),
            Case("search: 'Добролюбова Ольга' (rare)", "/api/search", {"q": "Добролюбова Ольга"}),
            Case("search: 'заказ 123456' (order no.)", "/api/search", {"q": "заказ 123456"}),
            Case("search: 'айгерим' (Kazakhstan team's)", "/api/search", {"q": "айгерим"}),
            Case("pipeline board", "/api/pipeline", {}, _nonempty),
            Case("contacts: newest", "/api/contacts", {}, _nonempty),
            Case("contacts: prefix 'ив'", "/api/contacts", {"q": "ив"}, _nonempty),
            Case("contacts: prefix 'ай'", "/api/contacts", {"q": "ай"}),
            Case("contacts: prefix 'святослав'", "/api/contacts", {"q": "святослав"}),
        ]
        personas = [
            ("admin", 1, [Case("deals: assignee_id=manager 7", "/api/deals", {"assignee_id": 8}, _nonempty)]),
            ("manager", 2, []),
            ("new manager", NEW_MANAGER_ID, []),
        ]
        rows: list[tuple[str, str, float, float, float, float, int]] = []
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("10.9.9.9", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://crm.bench", timeout=120) as client:
                for persona, user_id, extra in personas:
                    auth = headers(user_id)
                    cases = [Case("floor: GET /api/me", "/api/me", {}), *common, *extra]
                    if persona == "new manager":
                        cases = [
                            case
                            for case in cases
                            if case.name.startswith(
                                ("floor", "contacts", "pipeline", "search: 'иван'", "search: 'айгерим'")
                            )
                        ]
                    for case in cases:
                        if ONLY and not case.name.startswith("floor") and not any(o in case.name for o in ONLY):
                            continue
                        timings: list[float] = []
                        cold = 0.0
                        deadline = time.perf_counter() + SECONDS_PER_QUERY
                        for run in range(QUERIES + 1):
                            start = time.perf_counter()
                            response = await client.get(case.path, params=case.params, headers=auth)
                            elapsed = (time.perf_counter() - start) * 1000
                            if response.status_code != 200:
                                raise SystemExit(f"{case.name}: {response.status_code} {response.text[:300]}")
                            if run == 0:
                                cold = elapsed
                                if case.check is not None:
                                    case.check(response.json())
                                continue
                            timings.append(elapsed)
                            if time.perf_counter() > deadline and len(timings) >= 5:
                                break
                        p50, p95, p99 = (_pct(timings, q) for q in (0.5, 0.95, 0.99))
                        rows.append((persona, case.name, cold, p50, p95, p99, len(timings)))
                        flag = "" if p95 <= 50 else "  > 50 ms"
                        print(
                            f"{persona:12} {case.name:38} cold {cold:8.1f}  p50 {p50:7.1f}  p95 {p95:7.1f}"
                            f"  p99 {p99:7.1f} ms  (n={len(timings)}){flag}",
                            flush=True,
                        )
        if JSON_OUT:
            with open(JSON_OUT, "a", encoding="utf-8") as out:
                keys = ("persona", "query", "cold", "p50", "p95", "p99", "n")
                out.write(
                    json.dumps({"deals": DEALS, "rows": [dict(zip(keys, row, strict=True)) for row in rows]}) + "\n"
                )
        over = [row for row in rows if row[4] > 50 and not row[1].startswith("floor")]
        print()
        print(f"{len(rows)} figures, {len(over)} above p95 50 ms" + ("" if not over else ":"))
        for persona, name, _cold, _p50, p95, _p99, _n in over:
            print(f"  {persona:12} {name:38} p95 {p95:7.1f} ms")
        print(f"median over all non-floor p50s: {statistics.median(r[3] for r in rows if 'floor' not in r[1]):.1f} ms")
    finally:
        await redis.aclose()
        await engine.dispose()


async def main() -> None:
    started = time.perf_counter()
    reuse = REUSE and await _exists()
    if reuse:
        progress(f"keeping the generated database {DB}")
        engine = create_engine(f"{PG}/{DB}", SCHEMA, pool_size=1)
        try:
            await _migrate(engine)
            await _create_missing_indexes(engine)
        finally:
            await engine.dispose()
    else:
        progress(f"creating database {DB} and migrating crm's schema")
        await _recreate_database()
        engine = create_engine(f"{PG}/{DB}", SCHEMA, pool_size=1)
        try:
            await _migrate(engine)
        finally:
            await engine.dispose()
        await generate(DEALS)
        progress(f"generated in {time.perf_counter() - started:.0f}s")
    await describe()
    progress(f"measuring: {QUERIES} warm runs per query (at most ~{SECONDS_PER_QUERY:.0f}s each) after one cold run")
    await measure()
    progress(f"done in {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    asyncio.run(main())
