"""Direct media per member of staff: their phone may send RTP straight to another such phone.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

One column with a default, so existing staff keep anchored media and SQLite needs no rebuild.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``staff.direct_media``, false for everyone."""
    op.add_column("staff", sa.Column("direct_media", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    """Drop the column; SQLite 3.35 or newer drops it in place."""
    with op.batch_alter_table("staff", recreate="never") as batch:
        batch.drop_column("direct_media")
