"""Queue position announcements: how often a waiting caller hears their place in the queue.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22

One column with a default (0: never), so existing groups and functions announce nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``ring_group.announce_every`` (seconds), 0 for every group and function."""
    op.add_column("ring_group", sa.Column("announce_every", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    """Drop the column; SQLite 3.35 or newer drops it in place."""
    with op.batch_alter_table("ring_group", recreate="never") as batch:
        batch.drop_column("announce_every")
