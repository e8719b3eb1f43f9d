"""SQLAlchemy 2 models of the reading database.

The schema itself carries the rules that must hold whatever client writes to it:

* ``reading`` references its assignment through (assignment id, reader id, arm), so a read can
  only belong to the reader the case was assigned to, in the assignment's arm;
* ``grade_entry`` references its read through (reading id, arm) and a CHECK forbids an AI grade
  on a ``manual``-arm entry, so AI output can never be recorded as shown in the manual arm;
* ``assignment`` is unique per (reader, case, session), so one reader cannot read a case in both
  arms in the same session, and unique per (reader, case, arm);
* at most one draft per assignment (partial unique index) and one row per (assignment, version);
* triggers (see :mod:`lvp.readingdb.rules`) make submitted reads, their grades and the audit log
  immutable.

Times are naive UTC. Pathologies and levels are free strings validated by :mod:`lvp.readingdb.scales`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names so that migrations on SQLite (batch mode) and PostgreSQL agree.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with the project's constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING)


ARM_CHECK = "arm IN ('manual', 'ai_assisted')"


class Study(Base):
    """A reader study: a set of cases read by readers in two arms."""

    __tablename__ = "study"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    washout_days: Mapped[int] = mapped_column(Integer, default=28)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Case(Base):
    """A de-identified case (one MRI study) of a reader study."""

    __tablename__ = "study_case"
    __table_args__ = (UniqueConstraint("study_id", "case_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"))
    case_key: Mapped[str] = mapped_column(String(200))
    image_ref: Mapped[str] = mapped_column(Text, default="")
    center: Mapped[str] = mapped_column(String(100), default="")


class Reader(Base):
    """A reader (radiologist), identified by a unique user name."""

    __tablename__ = "reader"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    center: Mapped[str] = mapped_column(String(100), default="")


class StudyReader(Base):
    """Enrolment of a reader in a study."""

    __tablename__ = "study_reader"
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), primary_key=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("reader.id"), primary_key=True)


class Assignment(Base):
    """A case to be read by a reader in one arm, in a session (washout order) and position."""

    __tablename__ = "assignment"
    __table_args__ = (
        CheckConstraint(ARM_CHECK, name="arm"),
        CheckConstraint("session >= 1", name="session"),
        # The rule "not the same case in both arms in the same session".
        UniqueConstraint("reader_id", "case_id", "session"),
        UniqueConstraint("reader_id", "case_id", "arm"),
        # Target of reading's composite foreign key.
        UniqueConstraint("id", "reader_id", "arm"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"))
    reader_id: Mapped[int] = mapped_column(ForeignKey("reader.id"))
    case_id: Mapped[int] = mapped_column(ForeignKey("study_case.id"))
    arm: Mapped[str] = mapped_column(String(20))
    session: Mapped[int] = mapped_column(Integer)
    order_index: Mapped[int] = mapped_column(Integer)


class Reading(Base):
    """One version of a reader's read of an assignment (draft, then submitted and immutable)."""

    __tablename__ = "reading"
    __table_args__ = (
        CheckConstraint(ARM_CHECK, name="arm"),
        CheckConstraint("status IN ('draft', 'submitted')", name="status"),
        CheckConstraint("status = 'draft' OR submitted_at IS NOT NULL", name="submitted_time"),
        CheckConstraint("version = 1 OR correction_reason IS NOT NULL", name="correction_reason"),
        UniqueConstraint("assignment_id", "version"),
        UniqueConstraint("id", "arm"),
        ForeignKeyConstraint(
            ["assignment_id", "reader_id", "arm"],
            ["assignment.id", "assignment.reader_id", "assignment.arm"],
        ),
        # At most one open draft per assignment, also under concurrent starts.
        Index(
            "uq_reading_one_draft",
            "assignment_id",
            unique=True,
            sqlite_where=text("status = 'draft'"),
            postgresql_where=text("status = 'draft'"),
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(Integer)
    reader_id: Mapped[int] = mapped_column(Integer)
    arm: Mapped[str] = mapped_column(String(20))
    version: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(20), default="draft")
    started_at: Mapped[datetime] = mapped_column(DateTime)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("reading.id"), nullable=True)
    correction_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class GradeEntry(Base):
    """A reader's grade for one pathology at one level, with the AI grade shown (AI arm only)."""

    __tablename__ = "grade_entry"
    __table_args__ = (
        CheckConstraint(ARM_CHECK, name="arm"),
        CheckConstraint(
            "arm <> 'manual' OR (ai_grade_shown IS NULL AND ai_decision IS NULL)", name="manual_no_ai"
        ),
        CheckConstraint(
            "ai_decision IS NULL OR ai_decision IN ('accepted', 'modified')", name="ai_decision"
        ),
        UniqueConstraint("reading_id", "level", "pathology"),
        ForeignKeyConstraint(["reading_id", "arm"], ["reading.id", "reading.arm"]),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    reading_id: Mapped[int] = mapped_column(Integer)
    arm: Mapped[str] = mapped_column(String(20))
    level: Mapped[str] = mapped_column(String(20))
    pathology: Mapped[str] = mapped_column(String(50))
    reader_grade: Mapped[int] = mapped_column(Integer)
    measurement: Mapped[float | None] = mapped_column(Float, nullable=True)
    ai_grade_shown: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ai_decision: Mapped[str | None] = mapped_column(String(20), nullable=True)
    # The level the AI graded this row as, when the reader renamed the level (AI arm; else NULL).
    ai_level: Mapped[str | None] = mapped_column(String(20), nullable=True)


class ReferenceGrade(Base):
    """The reference-standard grade of one pathology at one level of a case."""

    __tablename__ = "reference_grade"
    __table_args__ = (UniqueConstraint("case_id", "level", "pathology"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("study_case.id"))
    level: Mapped[str] = mapped_column(String(20))
    pathology: Mapped[str] = mapped_column(String(50))
    grade: Mapped[int] = mapped_column(Integer)
    measurement: Mapped[float | None] = mapped_column(Float, nullable=True)
    source: Mapped[str] = mapped_column(String(200), default="")


class AIResult(Base):
    """The AI's output for one pathology at one level of a case (shown only in the AI arm)."""

    __tablename__ = "ai_result"
    __table_args__ = (UniqueConstraint("case_id", "level", "pathology"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("study_case.id"))
    level: Mapped[str] = mapped_column(String(20))
    pathology: Mapped[str] = mapped_column(String(50))
    grade: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    measurement: Mapped[float | None] = mapped_column(Float, nullable=True)
    model_version: Mapped[str] = mapped_column(String(100), default="")


class AuditLog(Base):
    """Append-only log of every change: who, when, what, old -> new (JSON text)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(50))
    entity: Mapped[str] = mapped_column(String(50))
    entity_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    old_value: Mapped[str | None] = mapped_column(Text, nullable=True)
    new_value: Mapped[str | None] = mapped_column(Text, nullable=True)
