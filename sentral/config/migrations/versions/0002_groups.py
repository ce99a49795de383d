"""Ring groups, functions, role numbers, phones logged on or off, and published line states.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01

Columns are added to ``staff`` and ``role`` with plain ``ALTER TABLE ... ADD COLUMN`` and the role
number's uniqueness is a unique index, because SQLite can do both in place. Anything more would
make Alembic rebuild those tables on SQLite, and dropping the old table, with foreign keys on,
would cascade into the rows that refer to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the group, membership, function-role and line-state tables and the new columns."""
    op.add_column("staff", sa.Column("phone_on", sa.Boolean(), server_default=sa.true(), nullable=False))
    op.add_column("role", sa.Column("number", sa.String(10), nullable=True))
    op.create_index("ix_role_clinic_id_number", "role", ["clinic_id", "number"], unique=True)
    op.create_table(
        "ring_group",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("number", sa.String(10), nullable=True),
        sa.Column("acute_number", sa.String(10), nullable=True),
        sa.Column("strategy", sa.String(16), server_default="ringall", nullable=False),
        sa.Column("member_timeout", sa.Integer(), server_default="20", nullable=False),
        sa.Column("ring_timeout", sa.Integer(), server_default="60", nullable=False),
        sa.Column("overflow", sa.String(16), nullable=True),
        sa.Column("ring_busy", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("max_wait", sa.Integer(), server_default="300", nullable=False),
        sa.CheckConstraint("kind IN ('group', 'function')", name="ck_ring_group_kind"),
        sa.CheckConstraint(
            "strategy IN ('ringall', 'linear', 'rrmemory', 'leastrecent', 'fewestcalls', 'random')",
            name="ck_ring_group_strategy",
        ),
        sa.CheckConstraint(
            "member_timeout > 0 AND ring_timeout > 0 AND max_wait >= 0", name="ck_ring_group_times"
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinic.id"], name="fk_ring_group_clinic_id_clinic", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_ring_group"),
        sa.UniqueConstraint("clinic_id", "name", name="uq_ring_group_clinic_id_name"),
        sa.UniqueConstraint("clinic_id", "number", name="uq_ring_group_clinic_id_number"),
        sa.UniqueConstraint("clinic_id", "acute_number", name="uq_ring_group_clinic_id_acute_number"),
    )
    op.create_table(
        "group_member",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("logged_in", sa.Boolean(), nullable=False),
        sa.Column("via_role", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(
            ["group_id"], ["ring_group.id"], name="fk_group_member_group_id_ring_group", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff.id"], name="fk_group_member_staff_id_staff", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("group_id", "staff_id", name="pk_group_member"),
    )
    op.create_index("ix_group_member_staff_id", "group_member", ["staff_id"])
    op.create_table(
        "function_role",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("role_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"], ["ring_group.id"], name="fk_function_role_group_id_ring_group", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["role_id"], ["role.id"], name="fk_function_role_role_id_role", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("group_id", "role_id", name="pk_function_role"),
    )
    op.create_table(
        "line_state",
        sa.Column("domain", sa.String(253), nullable=False),
        sa.Column("extension", sa.String(64), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("acute", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.CheckConstraint("state IN ('idle', 'ringing', 'busy')", name="ck_line_state_state"),
        sa.PrimaryKeyConstraint("domain", "extension", name="pk_line_state"),
    )


def downgrade() -> None:
    """Drop what ``upgrade`` added; SQLite 3.35 or newer drops the columns in place."""
    op.drop_table("line_state")
    op.drop_table("function_role")
    op.drop_index("ix_group_member_staff_id", table_name="group_member")
    op.drop_table("group_member")
    op.drop_table("ring_group")
    op.drop_index("ix_role_clinic_id_number", table_name="role")
    with op.batch_alter_table("role", recreate="never") as batch:
        batch.drop_column("number")
    with op.batch_alter_table("staff", recreate="never") as batch:
        batch.drop_column("phone_on")
