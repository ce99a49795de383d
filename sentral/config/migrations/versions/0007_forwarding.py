"""Call forwarding: each member of staff's forwards, and the forwards a recorded call followed.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

A new table, ``staff_forward`` (one row per forward that is set), and one nullable column on
``call_record``, both of which SQLite adds in place. Nobody has a forward until an operator or a
phone sets one, so nothing changes for existing staff or records.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``staff_forward`` and ``call_record.forwarded``."""
    op.create_table(
        "staff_forward",
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("after", sa.Integer(), nullable=True),
        sa.CheckConstraint("kind IN ('always', 'busy', 'noanswer')", name="ck_staff_forward_kind"),
        sa.CheckConstraint("after IS NULL OR after > 0", name="ck_staff_forward_after"),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff.id"], name="fk_staff_forward_staff_id_staff", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("staff_id", "kind", name="pk_staff_forward"),
    )
    op.add_column("call_record", sa.Column("forwarded", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop them again; SQLite 3.35 or newer drops the column in place."""
    with op.batch_alter_table("call_record", recreate="never") as batch:
        batch.drop_column("forwarded")
    op.drop_table("staff_forward")
