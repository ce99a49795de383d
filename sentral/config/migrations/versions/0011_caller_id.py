"""Caller ID: lookup adapters, contacts, a clinic's lookup budget, the national-ID prompt flag and
who the lookup found in each call record.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

Two new tables and nullable or defaulted columns, so existing rows need nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the caller_adapter and contact tables and the new columns."""
    op.add_column("clinic", sa.Column("lookup_budget_ms", sa.Integer(), server_default="150", nullable=False))
    op.add_column("public_number", sa.Column("ask_id", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("call_record", sa.Column("caller_kind", sa.String(16), nullable=True))
    op.add_column("call_record", sa.Column("caller_reference", sa.Text(), nullable=True))
    op.add_column("call_record", sa.Column("caller_source", sa.String(64), nullable=True))
    op.create_table(
        "caller_adapter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("query_number", sa.Text(), nullable=True),
        sa.Column("query_id", sa.Text(), nullable=True),
        sa.Column("file", sa.Text(), nullable=True),
        sa.Column("token_file", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinic.id"], name="fk_caller_adapter_clinic_id_clinic", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_caller_adapter"),
        sa.UniqueConstraint("clinic_id", "name", name="uq_caller_adapter_clinic_id_name"),
    )
    op.create_index("ix_caller_adapter_clinic_id", "caller_adapter", ["clinic_id"])
    op.create_table(
        "contact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("number", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), server_default="contact", nullable=False),
        sa.CheckConstraint("kind IN ('patient', 'contact', 'staff')", name="ck_contact_kind"),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinic.id"], name="fk_contact_clinic_id_clinic", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_contact"),
        sa.UniqueConstraint("clinic_id", "name", name="uq_contact_clinic_id_name"),
    )
    op.create_index("ix_contact_clinic_id", "contact", ["clinic_id"])


def downgrade() -> None:
    """Drop them again; SQLite 3.35 or newer drops columns in place."""
    op.drop_index("ix_contact_clinic_id", table_name="contact")
    op.drop_table("contact")
    op.drop_index("ix_caller_adapter_clinic_id", table_name="caller_adapter")
    op.drop_table("caller_adapter")
    with op.batch_alter_table("call_record", recreate="never") as batch:
        batch.drop_column("caller_source")
        batch.drop_column("caller_reference")
        batch.drop_column("caller_kind")
    with op.batch_alter_table("public_number", recreate="never") as batch:
        batch.drop_column("ask_id")
    with op.batch_alter_table("clinic", recreate="never") as batch:
        batch.drop_column("lookup_budget_ms")
