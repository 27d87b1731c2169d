"""Files uploaded into task forms (signed contracts, acceptance certificates, complaint evidence).

One row per upload: who uploaded which bytes, under which name, into which field of which task. The bytes
live in ``workflows/storage.py`` under their SHA-256, so identical files share one blob while each upload
keeps its own name and provenance. Task data refers to a file by a reference carrying the same SHA-256
(``workflows.forms.file_reference``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base


class Attachment(Base):
    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    field: Mapped[str] = mapped_column(String(200))  # the form field's path: customer_evidence, group/file
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(100))  # found from the bytes, never the browser's word
    name: Mapped[str] = mapped_column(String(255))  # the file name as uploaded (checked, never a path)
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    uploaded_at: Mapped[datetime]

    __table_args__ = (Index("ix_attachments_instance", "instance_id", "sha256"),)
