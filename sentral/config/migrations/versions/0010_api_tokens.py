"""API tokens: the clinic platform's keys to the web API.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10

One new table; a clinic's tokens go with it. Only the SHA-256 of each token is stored.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the api_token table."""
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinic.id"], name="fk_api_token_clinic_id_clinic", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_api_token"),
        sa.UniqueConstraint("clinic_id", "name", name="uq_api_token_clinic_id_name"),
        sa.UniqueConstraint("token_hash", name="uq_api_token_token_hash"),
    )
    op.create_index("ix_api_token_clinic_id", "api_token", ["clinic_id"])


def downgrade() -> None:
    """Drop the tokens."""
    op.drop_index("ix_api_token_clinic_id", table_name="api_token")
    op.drop_table("api_token")
