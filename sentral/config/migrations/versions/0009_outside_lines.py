"""Outside lines: trunks, public numbers, extra closed days, outbound countries and trunk states.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

Five new tables, and nullable or defaulted columns on ``clinic`` and ``staff``, all of which SQLite
adds in place (no table is rebuilt, so nothing cascades). Every existing clinic is in Norway with
no main number and reads opening hours in the server's time zone; every member of staff may dial
national numbers and calls out with the clinic's main number: what a clinic gets that is added now.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the outside-line tables and the clinic's and staff's columns for them."""
    op.add_column("clinic", sa.Column("country", sa.String(2), server_default="NO", nullable=False))
    op.add_column("clinic", sa.Column("main_number", sa.String(16), nullable=True))
    op.add_column("clinic", sa.Column("timezone", sa.String(64), nullable=True))
    op.add_column("staff", sa.Column("dial", sa.String(16), server_default="national", nullable=False))
    op.add_column("staff", sa.Column("public_number", sa.String(16), nullable=True))
    op.create_table(
        "clinic_country",
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.CheckConstraint("code BETWEEN 1 AND 999", name="ck_clinic_country_code"),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinic.id"], name="fk_clinic_country_clinic_id_clinic", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("clinic_id", "code", name="pk_clinic_country"),
    )
    op.create_table(
        "trunk",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("host", sa.String(253), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("transport", sa.String(3), server_default="udp", nullable=False),
        sa.Column("priority", sa.Integer(), server_default="10", nullable=False),
        sa.Column("register", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("username", sa.String(128), nullable=True),
        sa.Column("password", sa.String(256), nullable=True),
        sa.Column("realm", sa.String(253), nullable=True),
        sa.Column("number_format", sa.String(8), server_default="e164", nullable=False),
        sa.Column("addresses", sa.Text(), server_default="", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.CheckConstraint("transport IN ('udp', 'tcp', 'tls')", name="ck_trunk_transport"),
        sa.CheckConstraint(
            "number_format IN ('e164', 'digits', 'national', '00')", name="ck_trunk_number_format"
        ),
        sa.CheckConstraint("port BETWEEN 1 AND 65535", name="ck_trunk_port"),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinic.id"], name="fk_trunk_clinic_id_clinic", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_trunk"),
        sa.UniqueConstraint("clinic_id", "name", name="uq_trunk_clinic_id_name"),
    )
    op.create_table(
        "public_number",
        sa.Column("number", sa.String(16), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("destination", sa.String(80), nullable=False),
        sa.Column("hours", sa.Text(), nullable=True),
        sa.Column("closed_to", sa.String(16), nullable=True),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinic.id"], name="fk_public_number_clinic_id_clinic", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("number", name="pk_public_number"),
    )
    op.create_index("ix_public_number_clinic_id", "public_number", ["clinic_id"])
    op.create_table(
        "holiday",
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinic.id"], name="fk_holiday_clinic_id_clinic", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("clinic_id", "day", name="pk_holiday"),
    )
    op.create_table(
        "trunk_state",
        sa.Column("domain", sa.String(253), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("calls", sa.Integer(), server_default="0", nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.CheckConstraint(
            "state IN ('registered', 'registering', 'failed', 'up', 'down', 'unregistered')",
            name="ck_trunk_state_state",
        ),
        sa.PrimaryKeyConstraint("domain", "name", name="pk_trunk_state"),
    )


def downgrade() -> None:
    """Drop them again, trunks and passwords with them; SQLite 3.35 or newer drops columns in place."""
    op.drop_table("trunk_state")
    op.drop_table("holiday")
    op.drop_index("ix_public_number_clinic_id", table_name="public_number")
    op.drop_table("public_number")
    op.drop_table("trunk")
    op.drop_table("clinic_country")
    with op.batch_alter_table("staff", recreate="never") as batch:
        batch.drop_column("public_number")
        batch.drop_column("dial")
    with op.batch_alter_table("clinic", recreate="never") as batch:
        batch.drop_column("timezone")
        batch.drop_column("main_number")
        batch.drop_column("country")
