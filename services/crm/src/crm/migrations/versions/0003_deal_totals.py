"""Deal totals per stage and status, kept by triggers, for the pipeline board

Counting a million deals for the admin's board took ~250 ms however it was indexed. The
totals are now kept as they change: a statement-level trigger adds what an INSERT
brought (one upsert per statement, however many deals), a row trigger moves a deal's
count and amount when its stage, status or amount changes (not on the frequent updates
of its messages and response tracking), and DELETE and TRUNCATE take theirs away. The
rows a statement touches are upserted in key order and spread over 8 buckets by
transaction id, so concurrent writers neither deadlock nor queue on one hot row.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BUCKETS = 8

# Adds signed deltas (stage_id, status, deals, amount) from a query, in key order.
_APPLY = f"""
    INSERT INTO deal_totals (stage_id, status, bucket, deals, amount)
    SELECT stage_id, status, (txid_current() % {BUCKETS})::smallint, sum(deals), sum(amount)
    FROM ({{source}}) AS delta (stage_id, status, deals, amount)
    GROUP BY stage_id, status
    ORDER BY stage_id, status
    ON CONFLICT (stage_id, status, bucket) DO UPDATE
    SET deals = deal_totals.deals + excluded.deals, amount = deal_totals.amount + excluded.amount
"""


def upgrade() -> None:
    op.create_table(
        "deal_totals",
        sa.Column("stage_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("bucket", sa.SmallInteger(), nullable=False),
        sa.Column("deals", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.Numeric(), nullable=False),
        sa.PrimaryKeyConstraint("stage_id", "status", "bucket"),
    )
    inserted = _APPLY.format(source="SELECT stage_id, status, 1, coalesce(amount, 0) FROM added")
    deleted = _APPLY.format(source="SELECT stage_id, status, -1, -coalesce(amount, 0) FROM removed")
    moved = _APPLY.format(
        source="VALUES (OLD.stage_id, OLD.status, -1, -coalesce(OLD.amount, 0)),"
        " (NEW.stage_id, NEW.status, 1, coalesce(NEW.amount, 0))"
    )
    op.execute(f"CREATE FUNCTION deal_totals_added() RETURNS trigger AS $$ BEGIN {inserted}; RETURN NULL; END $$ LANGUAGE plpgsql")
    op.execute(f"CREATE FUNCTION deal_totals_removed() RETURNS trigger AS $$ BEGIN {deleted}; RETURN NULL; END $$ LANGUAGE plpgsql")
    op.execute(f"CREATE FUNCTION deal_totals_moved() RETURNS trigger AS $$ BEGIN {moved}; RETURN NULL; END $$ LANGUAGE plpgsql")
    op.execute(
        "CREATE FUNCTION deal_totals_truncated() RETURNS trigger AS $$"
        " BEGIN DELETE FROM deal_totals; RETURN NULL; END $$ LANGUAGE plpgsql"
    )
    # No deal changes while the triggers are created and the totals counted.
    op.execute("LOCK TABLE deals IN SHARE ROW EXCLUSIVE MODE")
    op.execute(
        "CREATE TRIGGER deal_totals_added AFTER INSERT ON deals REFERENCING NEW TABLE AS added"
        " FOR EACH STATEMENT EXECUTE FUNCTION deal_totals_added()"
    )
    op.execute(
        "CREATE TRIGGER deal_totals_removed AFTER DELETE ON deals REFERENCING OLD TABLE AS removed"
        " FOR EACH STATEMENT EXECUTE FUNCTION deal_totals_removed()"
    )
    op.execute(
        "CREATE TRIGGER deal_totals_moved AFTER UPDATE OF stage_id, status, amount ON deals FOR EACH ROW"
        " WHEN (OLD.stage_id IS DISTINCT FROM NEW.stage_id OR OLD.status IS DISTINCT FROM NEW.status"
        " OR OLD.amount IS DISTINCT FROM NEW.amount) EXECUTE FUNCTION deal_totals_moved()"
    )
    op.execute(
        "CREATE TRIGGER deal_totals_truncated AFTER TRUNCATE ON deals FOR EACH STATEMENT"
        " EXECUTE FUNCTION deal_totals_truncated()"
    )
    op.execute(
        "INSERT INTO deal_totals (stage_id, status, bucket, deals, amount)"
        " SELECT stage_id, status, 0, count(*), coalesce(sum(amount), 0) FROM deals GROUP BY stage_id, status"
    )


def downgrade() -> None:
    for trigger in ("added", "removed", "moved", "truncated"):
        op.execute(f"DROP TRIGGER deal_totals_{trigger} ON deals")
        op.execute(f"DROP FUNCTION deal_totals_{trigger}()")
    op.drop_table("deal_totals")
