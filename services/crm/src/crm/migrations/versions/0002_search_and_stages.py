"""Full-text search over deals and the default pipeline stages

The search vector is kept by triggers so every writer (consumer, API, AI results) keeps
it right without thinking about it: contact name and username weigh A, the AI summary
and intent B, the comment and the last message C, the status D. The 'simple'
configuration lower-cases without stemming, so any language (Cyrillic included) matches.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STAGES = (
    ("new", "New", 0),
    ("contacted", "Contacted", 1),
    ("qualified", "Qualified", 2),
    ("proposal", "Proposal", 3),
    ("negotiation", "Negotiation", 4),
)


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION deals_search_vector() RETURNS trigger AS $$
        DECLARE
            contact_name text;
            contact_username text;
        BEGIN
            SELECT name, username INTO contact_name, contact_username FROM contacts WHERE id = NEW.contact_id;
            NEW.search_vector :=
                setweight(to_tsvector('simple', coalesce(contact_name, '') || ' ' || coalesce(contact_username, '')), 'A')
                || setweight(to_tsvector('simple', coalesce(NEW.ai_summary, '') || ' ' || coalesce(NEW.ai_intent, '')), 'B')
                || setweight(to_tsvector('simple', coalesce(NEW.comment, '') || ' ' || coalesce(NEW.last_message_text, '')), 'C')
                || setweight(to_tsvector('simple', coalesce(NEW.status, '')), 'D');
            RETURN NEW;
        END
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        """
        CREATE TRIGGER deals_search_vector
        BEFORE INSERT OR UPDATE OF contact_id, ai_summary, ai_intent, comment, last_message_text, status ON deals
        FOR EACH ROW EXECUTE FUNCTION deals_search_vector()
        """
    )
    op.execute(
        """
        CREATE FUNCTION contacts_refresh_deal_search() RETURNS trigger AS $$
        BEGIN
            UPDATE deals SET contact_id = contact_id WHERE contact_id = NEW.id;
            RETURN NULL;
        END
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        """
        CREATE TRIGGER contacts_refresh_deal_search
        AFTER UPDATE OF name, username ON contacts
        FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name OR OLD.username IS DISTINCT FROM NEW.username)
        EXECUTE FUNCTION contacts_refresh_deal_search()
        """
    )
    values = ", ".join(f"('{key}', '{name}', {pos}, true)" for key, name, pos in STAGES)
    op.execute(f"INSERT INTO stages (key, name, position, is_active) VALUES {values} ON CONFLICT (key) DO NOTHING")


def downgrade() -> None:
    op.execute("DELETE FROM stages")
    op.execute("DROP TRIGGER contacts_refresh_deal_search ON contacts")
    op.execute("DROP FUNCTION contacts_refresh_deal_search()")
    op.execute("DROP TRIGGER deals_search_vector ON deals")
    op.execute("DROP FUNCTION deals_search_vector()")
