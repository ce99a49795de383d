"""Digest algorithms per member of staff: the ones their phone is challenged with.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23

One nullable column. NULL, which every existing member of staff gets, follows the clinic's
setting, so nothing changes until an operator gives a phone a setting of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``staff.digest_algorithms``, NULL (the clinic's) for everyone."""
    op.add_column("staff", sa.Column("digest_algorithms", sa.String(32), nullable=True))


def downgrade() -> None:
    """Drop the column; SQLite 3.35 or newer drops it in place."""
    with op.batch_alter_table("staff", recreate="never") as batch:
        batch.drop_column("digest_algorithms")
