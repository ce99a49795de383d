"""Park lots: a park number and a range of slots per lot, with the recall timeout.

Revision ID: 0003
Revises: 0002
Create Date: 2025-03-01

One new table and nothing altered, so SQLite needs no table rebuild either way.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the ``park_lot`` table."""
    op.create_table(
        "park_lot",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("number", sa.String(10), nullable=False),
        sa.Column("first_slot", sa.String(10), nullable=False),
        sa.Column("last_slot", sa.String(10), nullable=False),
        sa.Column("timeout", sa.Integer(), server_default="45", nullable=False),
        sa.CheckConstraint("timeout > 0", name="ck_park_lot_timeout"),
        sa.CheckConstraint(
            "length(first_slot) = length(last_slot) AND first_slot <= last_slot", name="ck_park_lot_slots"
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinic.id"], name="fk_park_lot_clinic_id_clinic", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_park_lot"),
        sa.UniqueConstraint("clinic_id", "name", name="uq_park_lot_clinic_id_name"),
        sa.UniqueConstraint("clinic_id", "number", name="uq_park_lot_clinic_id_number"),
    )


def downgrade() -> None:
    """Drop the ``park_lot`` table."""
    op.drop_table("park_lot")
