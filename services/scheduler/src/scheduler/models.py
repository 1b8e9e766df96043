"""The scheduler schema: job definitions and their fire history, and the outbox.

Declared with SQLAlchemy Core (the scheduler writes them with a few hand-written
statements); the migrations and ``alembic check`` use this metadata. Exactly one tick per
slot rests on the unique key of ``fires`` (job, slot): every replica tries to insert the
slot's row, one succeeds and stages the tick in the same transaction.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from jggl_common.outbox import outbox_columns

metadata = sa.MetaData()

_TS = sa.DateTime(timezone=True)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False, comment="interval or cron"),
    sa.Column("expression", sa.String(100), nullable=False, comment="seconds (interval) or a 5-field cron"),
    sa.Column("timezone", sa.String(64), nullable=False, comment="IANA zone a cron expression is read in"),
    sa.Column("owner", sa.String(40), nullable=False, comment="the service that handles the ticks"),
    sa.Column("description", sa.Text(), nullable=False, server_default=""),
    sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
    sa.Column("enabled_set_at", _TS, nullable=True, comment="when the command that last set enabled was given"),
    sa.Column(
        "active_since",
        _TS,
        nullable=False,
        comment="slots before it are never fired: the job did not exist, was off or had another schedule",
    ),
    sa.Column("revision", sa.BigInteger(), nullable=False, server_default="1", comment="grows with every change"),
    sa.Column("updated_at", _TS, nullable=False),
    sa.CheckConstraint("kind IN ('interval', 'cron')", name="ck_jobs_kind"),
)

fires = sa.Table(
    "fires",
    metadata,
    sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
    sa.Column("job", sa.String(40), nullable=False),
    sa.Column("slot", sa.String(50), nullable=False, comment="UTC moment (20261206T090000Z) or manual-<command id>"),
    sa.Column("scheduled_for", _TS, nullable=False),
    sa.Column("fired_at", _TS, nullable=False),
    sa.Column("manual", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("requested_by_user_id", sa.BigInteger(), nullable=True),
    sa.Column("params", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending", comment="pending, done or failed"),
    sa.Column("counts", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("started_at", _TS, nullable=True),
    sa.Column("finished_at", _TS, nullable=True),
    sa.UniqueConstraint("job", "slot", name="ux_fires_job_slot"),
    sa.CheckConstraint("status IN ('pending', 'done', 'failed')", name="ck_fires_status"),
    sa.Index("ix_fires_job_fired", "job", "fired_at"),
    sa.Index("ix_fires_fired", "fired_at"),
)

outbox = sa.Table("outbox", metadata, *outbox_columns())
