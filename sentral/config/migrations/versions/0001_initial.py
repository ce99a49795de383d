"""Initial schema: clinics, staff, roles, bindings, call records, live calls and the directory version.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create every table and the directory version row."""
    op.create_table(
        "clinic",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(253), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("digest_algorithms", sa.String(32), server_default="SHA-256,MD5", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_clinic"),
        sa.UniqueConstraint("domain", name="uq_clinic_domain"),
    )
    op.create_table(
        "staff",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("extension", sa.String(10), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("ha1_md5", sa.String(32), nullable=False),
        sa.Column("ha1_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinic.id"], name="fk_staff_clinic_id_clinic", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_staff"),
        sa.UniqueConstraint("clinic_id", "extension", name="uq_staff_clinic_id_extension"),
    )
    op.create_table(
        "role",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinic.id"], name="fk_role_clinic_id_clinic", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_role"),
        sa.UniqueConstraint("clinic_id", "name", name="uq_role_clinic_id_name"),
    )
    op.create_table(
        "staff_role",
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.Column("role_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff.id"], name="fk_staff_role_staff_id_staff", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["role_id"], ["role.id"], name="fk_staff_role_role_id_role", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("staff_id", "role_id", name="pk_staff_role"),
    )
    op.create_table(
        "binding",
        sa.Column("domain", sa.String(253), nullable=False),
        sa.Column("extension", sa.String(64), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("contact", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("call_id", sa.Text(), nullable=False),
        sa.Column("cseq", sa.Integer(), nullable=False),
        sa.Column("instance", sa.Text(), nullable=True),
        sa.Column("reg_id", sa.Integer(), nullable=True),
        sa.Column("path", sa.Text(), server_default="", nullable=False),
        sa.Column("transport", sa.String(8), nullable=False),
        sa.Column("source_host", sa.String(255), nullable=False),
        sa.Column("source_port", sa.Integer(), nullable=False),
        sa.Column("local_listen", sa.Text(), nullable=False),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("domain", "extension", "key", name="pk_binding"),
    )
    op.create_index("ix_binding_expires_at", "binding", ["expires_at"])
    directory_version = op.create_table(
        "directory_version",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint("id = 1", name="ck_directory_version_single_row"),
        sa.PrimaryKeyConstraint("id", name="pk_directory_version"),
    )
    op.bulk_insert(directory_version, [{"id": 1, "version": 0}])
    op.create_table(
        "server_secret",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_server_secret"),
    )
    op.create_table(
        "call_record",
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("domain", sa.String(253), nullable=False),
        sa.Column("caller", sa.Text(), nullable=False),
        sa.Column("caller_name", sa.Text(), nullable=True),
        sa.Column("callee", sa.Text(), nullable=False),
        sa.Column("callee_extension", sa.String(64), nullable=True),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("ringing_at", sa.Float(), nullable=True),
        sa.Column("answered_at", sa.Float(), nullable=True),
        sa.Column("ended_at", sa.Float(), nullable=False),
        sa.Column("disposition", sa.String(32), nullable=False),
        sa.Column("hangup_by", sa.String(16), nullable=True),
        sa.Column("hangup_reason", sa.Text(), nullable=False),
        sa.Column("status_to_caller", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("call_id", name="pk_call_record"),
    )
    op.create_index("ix_call_record_started_at", "call_record", ["started_at"])
    op.create_index("ix_call_record_ended_at", "call_record", ["ended_at"])
    op.create_table(
        "call_leg",
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("leg", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("ringing_at", sa.Float(), nullable=True),
        sa.Column("answered_at", sa.Float(), nullable=True),
        sa.Column("ended_at", sa.Float(), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_id"], ["call_record.call_id"], name="fk_call_leg_call_id_call_record", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("call_id", "leg", name="pk_call_leg"),
    )
    op.create_table(
        "live_call",
        sa.Column("server_id", sa.String(64), nullable=False),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("domain", sa.String(253), nullable=False),
        sa.Column("caller", sa.Text(), nullable=False),
        sa.Column("callee", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("answered_at", sa.Float(), nullable=True),
        sa.Column("legs", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("server_id", "call_id", name="pk_live_call"),
    )


def downgrade() -> None:
    """Drop every table."""
    op.drop_table("live_call")
    op.drop_table("call_leg")
    op.drop_index("ix_call_record_ended_at", table_name="call_record")
    op.drop_index("ix_call_record_started_at", table_name="call_record")
    op.drop_table("call_record")
    op.drop_table("server_secret")
    op.drop_table("directory_version")
    op.drop_index("ix_binding_expires_at", table_name="binding")
    op.drop_table("binding")
    op.drop_table("staff_role")
    op.drop_table("role")
    op.drop_table("staff")
    op.drop_table("clinic")
