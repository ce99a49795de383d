"""Who calls, in the live calls: the caller's name and what the clinic's records say of them.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

Nullable columns of the live-call snapshots, so the rows a running server publishes need nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the caller's name, kind, record reference and matching adapter to live_call."""
    op.add_column("live_call", sa.Column("caller_name", sa.Text(), nullable=True))
    op.add_column("live_call", sa.Column("caller_kind", sa.String(16), nullable=True))
    op.add_column("live_call", sa.Column("caller_reference", sa.Text(), nullable=True))
    op.add_column("live_call", sa.Column("caller_source", sa.String(64), nullable=True))


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("live_call", recreate="never") as batch:
        batch.drop_column("caller_source")
        batch.drop_column("caller_reference")
        batch.drop_column("caller_kind")
        batch.drop_column("caller_name")
