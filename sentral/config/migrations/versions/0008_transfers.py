"""Transfers in the call records: a row per transfer of a finished call, and a live call's so far.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

A new table beside ``call_leg``, keyed and cascaded the same way, and one nullable column on
``live_call``; no existing row changes, and the records of calls made before have no transfers.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``call_transfer`` and ``live_call.transfers`` (NULL: not transferred)."""
    op.create_table(
        "call_transfer",
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("by_extension", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"], ["call_record.call_id"], name="fk_call_transfer_call_id_call_record", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("call_id", "seq", name="pk_call_transfer"),
    )
    op.add_column("live_call", sa.Column("transfers", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop them; the records keep their legs. SQLite 3.35 or newer drops the column in place."""
    with op.batch_alter_table("live_call", recreate="never") as batch:
        batch.drop_column("transfers")
    op.drop_table("call_transfer")
