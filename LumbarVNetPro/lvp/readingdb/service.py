"""The reader-facing API of the reading database (what the Slicer module calls).

Every method that touches a read takes the reader's user name and checks that the assignment or
read belongs to that reader; the schema enforces the same (see :mod:`lvp.readingdb.models`).
Each call is one transaction, so a saved draft survives a crash of the client.

Over 400 lines on purpose: one class, one transaction per method, every method with the
same ownership check; the reader-facing API reads as one contract.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from lvp.errors import DatabaseError
from lvp.readingdb.database import Database
from lvp.readingdb.models import (
    AIResult,
    Assignment,
    AuditLog,
    Case,
    GradeEntry,
    Reader,
    Reading,
    Study,
)
from lvp.readingdb.names import check_username
from lvp.readingdb.scales import check_grade


def utcnow() -> datetime:
    """The current time as naive UTC (the database's time convention)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)  # py3.10 support


@dataclass(frozen=True)
class Grade:
    """A reader's grade of one pathology at one level, with an optional measurement (mm).

    ``ai_level``: the level name the AI graded this row as, when the reader renamed the level
    (AI-assisted arm only); the AI grade shown is then the AI's grade at ``ai_level``.
    """

    level: str
    pathology: str
    grade: int
    measurement: float | None = None
    ai_level: str | None = None


@dataclass(frozen=True)
class AIGrade:
    """The AI's grade of one pathology at one level, with its confidence and measurement."""

    level: str
    pathology: str
    grade: int
    confidence: float | None = None
    measurement: float | None = None


@dataclass(frozen=True)
class WorkItem:
    """One entry of a reader's worklist."""

    assignment_id: int
    study: str
    case_key: str
    image_ref: str
    arm: str
    session: int
    order_index: int
    status: str  # "not_started", "draft" or "submitted"
    reading_id: int | None
    available: bool  # False while the washout of the previous session runs


@dataclass(frozen=True)
class OpenRead:
    """A read as the viewer needs it; ``ai_results`` is None in the manual arm."""

    reading_id: int
    assignment_id: int
    arm: str
    case_key: str
    image_ref: str
    version: int
    status: str
    started_at: datetime
    submitted_at: datetime | None
    duration_s: float | None
    grades: list[Grade]
    ai_results: list[AIGrade] | None


def audit(sess: Session, actor: str, action: str, entity: str, entity_id: int | None,
          old: object = None, new: object = None, at: datetime | None = None) -> None:
    """Append one audit record (old and new values as JSON) in the caller's transaction."""
    sess.add(
        AuditLog(
            at=at or utcnow(),
            actor=actor,
            action=action,
            entity=entity,
            entity_id=entity_id,
            old_value=None if old is None else json.dumps(old, sort_keys=True, default=str),
            new_value=None if new is None else json.dumps(new, sort_keys=True, default=str),
        )
    )


def _entry_dict(e: GradeEntry) -> dict:
    data = {
        "level": e.level,
        "pathology": e.pathology,
        "grade": e.reader_grade,
        "measurement": e.measurement,
        "ai_grade_shown": e.ai_grade_shown,
        "ai_decision": e.ai_decision,
    }
    if e.ai_level is not None:  # a level the reader renamed (AI arm)
        data["ai_level"] = e.ai_level
    return data


class ReadingDB(Database):
    """The reading database with the reader-facing operations.

    ``clock`` returns naive-UTC "now"; tests pass a controllable one to exercise the washout.
    """

    def __init__(self, url: str | None = None, *, upgrade: bool = True, pool_size: int = 5,
                 clock: Callable[[], datetime] = utcnow) -> None:
        """Open the database at ``url`` (see :func:`lvp.readingdb.database.resolve_url`)."""
        super().__init__(url, upgrade=upgrade, pool_size=pool_size)
        self.clock = clock

    # ----------------------------------------------------------------- readers
    def get_or_create_reader(self, username: str, display_name: str = "", center: str = "") -> int:
        """The id of reader ``username``, creating the reader if needed."""
        username = check_username(username)  # no path or formula characters: it names a folder
        for attempt in range(2):
            try:
                with self.session() as sess:
                    rid = sess.scalar(select(Reader.id).where(Reader.username == username))
                    if rid is not None:
                        return rid
                    reader = Reader(username=username, display_name=display_name, center=center)
                    sess.add(reader)
                    sess.flush()
                    audit(sess, "system", "create", "reader", reader.id, None,
                          {"username": username, "center": center}, at=self.clock())
                    return reader.id
            except DatabaseError:
                if attempt:  # a concurrent creator won the race: read its row on the retry
                    raise
        raise AssertionError("unreachable")

    def _reader(self, sess: Session, username: str) -> Reader:
        reader = sess.scalar(select(Reader).where(Reader.username == username))
        if reader is None:
            raise DatabaseError(f"unknown reader {username!r}")
        return reader

    def _assignment(self, sess: Session, reader: Reader, assignment_id: int) -> Assignment:
        asg = sess.get(Assignment, assignment_id)
        if asg is None or asg.reader_id != reader.id:
            # Same message whether absent or someone else's: do not reveal other readers' work.
            raise DatabaseError(f"assignment {assignment_id} is not assigned to reader {reader.username!r}")
        return asg

    def _reading(self, sess: Session, reader: Reader, reading_id: int, lock: bool = False) -> Reading:
        stmt = select(Reading).where(Reading.id == reading_id)
        if lock:
            stmt = stmt.with_for_update()
        rd = sess.scalar(stmt)
        if rd is None or rd.reader_id != reader.id:
            raise DatabaseError(f"read {reading_id} does not belong to reader {reader.username!r}")
        return rd

    # ---------------------------------------------------------------- worklist
    def _session_open(self, sess: Session, asg: Assignment) -> bool:
        """Washout rule: session k opens once all of session k-1 is submitted and washout days passed."""
        if asg.session <= 1:
            return True
        prev = select(Assignment.id).where(
            Assignment.study_id == asg.study_id,
            Assignment.reader_id == asg.reader_id,
            Assignment.session == asg.session - 1,
        )
        n_prev = sess.scalar(select(func.count()).select_from(prev.subquery()))
        done = sess.execute(
            select(func.count(func.distinct(Reading.assignment_id)), func.max(Reading.submitted_at)).where(
                Reading.assignment_id.in_(prev), Reading.status == "submitted", Reading.version == 1
            )
        ).one()
        if done[0] < n_prev:
            return False
        washout = sess.scalar(select(Study.washout_days).where(Study.id == asg.study_id)) or 0
        return done[1] is None or self.clock() >= done[1] + timedelta(days=washout)

    def worklist(self, reader: str, study: str | None = None) -> list[WorkItem]:
        """The reader's assignments in reading order, with arm, status and availability."""
        with self.session() as sess:
            rdr = self._reader(sess, reader)
            stmt = (
                select(Assignment, Case, Study)
                .join(Case, Case.id == Assignment.case_id)
                .join(Study, Study.id == Assignment.study_id)
                .where(Assignment.reader_id == rdr.id)
                .order_by(Study.name, Assignment.session, Assignment.order_index)
            )
            if study is not None:
                stmt = stmt.where(Study.name == study)
            items = []
            open_cache: dict[tuple[int, int], bool] = {}
            for asg, case, st in sess.execute(stmt):
                latest = sess.scalar(
                    select(Reading).where(Reading.assignment_id == asg.id).order_by(Reading.version.desc(),
                                                                                    Reading.id.desc())
                )
                key = (asg.study_id, asg.session)
                if key not in open_cache:
                    open_cache[key] = self._session_open(sess, asg)
                items.append(
                    WorkItem(asg.id, st.name, case.case_key, case.image_ref, asg.arm, asg.session,
                             asg.order_index, latest.status if latest else "not_started",
                             latest.id if latest else None, open_cache[key])
                )
            return items

    # ------------------------------------------------------------------- reads
    def _ai_for_case(self, sess: Session, case_id: int) -> list[AIGrade]:
        rows = sess.scalars(
            select(AIResult).where(AIResult.case_id == case_id).order_by(AIResult.level, AIResult.pathology)
        )
        return [AIGrade(r.level, r.pathology, r.grade, r.confidence, r.measurement) for r in rows]

    def _check_ai_visible(self, sess: Session, asg: Assignment, rd: Reading | None) -> None:
        """Raise unless the AI output of ``asg``'s case may be shown to its reader now.

        Blinding rule: a reader sees a case's AI output only in an opened (started) AI-arm read of
        that case, and never while a manual read of the same case by the same reader is a draft
        (which would let the AI grades leak into the manual arm).
        """
        if asg.arm != "ai_assisted":
            raise DatabaseError(f"AI output is not available for assignment {asg.id} (manual arm)")
        if rd is None:
            raise DatabaseError(f"AI output of assignment {asg.id} is shown only in its open read; "
                                "start the read first")
        manual_draft = sess.scalar(
            select(Reading.id).join(Assignment, Assignment.id == Reading.assignment_id).where(
                Assignment.reader_id == asg.reader_id, Assignment.case_id == asg.case_id,
                Assignment.arm == "manual", Reading.status == "draft")
        )
        if manual_draft is not None:
            raise DatabaseError(f"AI output of this case is hidden while your manual read {manual_draft} of the "
                                "same case is not submitted; submit that read first")

    def _open_read(self, sess: Session, rd: Reading) -> OpenRead:
        asg = sess.get(Assignment, rd.assignment_id)
        if rd.arm == "ai_assisted":
            self._check_ai_visible(sess, asg, rd)
        case = sess.get(Case, asg.case_id)
        entries = sess.scalars(
            select(GradeEntry).where(GradeEntry.reading_id == rd.id).order_by(GradeEntry.level,
                                                                               GradeEntry.pathology)
        )
        grades = [Grade(e.level, e.pathology, e.reader_grade, e.measurement, e.ai_level) for e in entries]
        ai = self._ai_for_case(sess, case.id) if rd.arm == "ai_assisted" else None
        return OpenRead(rd.id, asg.id, rd.arm, case.case_key, case.image_ref, rd.version, rd.status,
                        rd.started_at, rd.submitted_at, rd.duration_s, grades, ai)

    def start_read(self, reader: str, assignment_id: int) -> OpenRead:
        """Start (or resume) the reader's draft of an assignment and record the start time.

        AI grades are included only for an ``ai_assisted`` assignment; for ``manual`` they are None.
        A submitted read cannot be restarted (use :meth:`correct`).
        """
        for attempt in range(2):
            try:
                with self.session() as sess:
                    rdr = self._reader(sess, reader)
                    asg = self._assignment(sess, rdr, assignment_id)
                    rd = sess.scalar(
                        select(Reading).where(Reading.assignment_id == asg.id)
                        .order_by(Reading.version.desc())
                    )
                    if rd is not None and rd.status == "submitted":
                        raise DatabaseError(
                            f"assignment {assignment_id} is already submitted (read {rd.id}); "
                            "submit a correction instead"
                        )
                    if rd is None:
                        if not self._session_open(sess, asg):
                            raise DatabaseError(
                                f"session {asg.session} of reader {reader!r} is not open yet: finish "
                                f"session {asg.session - 1} and wait for the washout period"
                            )
                        now = self.clock()
                        rd = Reading(assignment_id=asg.id, reader_id=rdr.id, arm=asg.arm, version=1,
                                     status="draft", started_at=now)
                        sess.add(rd)
                        sess.flush()
                        audit(sess, reader, "start", "reading", rd.id, None,
                              {"assignment_id": asg.id, "arm": asg.arm}, at=now)
                    return self._open_read(sess, rd)
            except DatabaseError as err:
                # Two clients starting the same assignment at once: the loser re-reads the winner's draft.
                if attempt or "constraint" not in str(err):
                    raise
        raise AssertionError("unreachable")

    def get_read(self, reader: str, reading_id: int) -> OpenRead:
        """One of the reader's reads (draft or submitted) with its grades."""
        with self.session() as sess:
            rdr = self._reader(sess, reader)
            return self._open_read(sess, self._reading(sess, rdr, reading_id))

    def ai_results(self, reader: str, assignment_id: int) -> list[AIGrade]:
        """The AI grades of an assignment's case, once its AI-arm read is started: while the read
        is a draft and after it is submitted (a submitted read is still shown with the AI grades it
        was read with).

        Refused for a ``manual``-arm assignment, before the read is started (e.g. a session not
        open yet) and while the reader's manual read of the same case is a draft.
        """
        with self.session() as sess:
            rdr = self._reader(sess, reader)
            asg = self._assignment(sess, rdr, assignment_id)
            rd = sess.scalar(select(Reading).where(Reading.assignment_id == asg.id).order_by(Reading.version.desc()))
            self._check_ai_visible(sess, asg, rd)
            return self._ai_for_case(sess, asg.case_id)

    def _write_grades(self, sess: Session, actor: str, rd: Reading, grades: Iterable[Grade],
                      replace: bool = False) -> int:
        """Insert or update the read's grade entries; the AI grade shown is taken from the database.

        The AI grade shown is the AI's grade at the entry's ``ai_level`` when the reader renamed
        the level, else at its level. ``replace``: entries of the read not in ``grades`` are
        deleted (a level renamed or gone on Recompute), each deletion audited.
        """
        asg = sess.get(Assignment, rd.assignment_id)
        ai = {}
        if rd.arm == "ai_assisted":
            ai = {(a.level, a.pathology): a.grade for a in self._ai_for_case(sess, asg.case_id)}
        existing = {(e.level, e.pathology): e
                    for e in sess.scalars(select(GradeEntry).where(GradeEntry.reading_id == rd.id))}
        n = 0
        written = set()
        for g in grades:
            grade = check_grade(g.pathology, g.grade)
            level = g.level.strip()
            if not level:
                raise DatabaseError("a grade needs a level, e.g. 'L4-L5'")
            ai_level = (g.ai_level or "").strip() or None
            if ai_level == level:
                ai_level = None
            if ai_level is not None:
                if rd.arm != "ai_assisted":
                    raise DatabaseError("a manual-arm grade has no AI level")
                if (ai_level, g.pathology) not in ai:
                    raise DatabaseError(f"no AI grade of {g.pathology} at level {ai_level!r} to rename from")
            shown = ai.get((ai_level or level, g.pathology))
            decision = None if shown is None else ("accepted" if shown == grade else "modified")
            written.add((level, g.pathology))
            entry = existing.get((level, g.pathology))
            new = {"level": level, "pathology": g.pathology, "grade": grade, "measurement": g.measurement,
                   "ai_grade_shown": shown, "ai_decision": decision}
            if ai_level is not None:
                new["ai_level"] = ai_level
            if entry is None:
                entry = GradeEntry(reading_id=rd.id, arm=rd.arm, level=level, pathology=g.pathology,
                                   reader_grade=grade, measurement=g.measurement, ai_grade_shown=shown,
                                   ai_decision=decision, ai_level=ai_level)
                sess.add(entry)
                sess.flush()
                existing[(level, g.pathology)] = entry
                audit(sess, actor, "grade", "grade_entry", entry.id, None, new, at=self.clock())
            else:
                old = _entry_dict(entry)
                if old != new:
                    entry.reader_grade, entry.measurement = grade, g.measurement
                    entry.ai_grade_shown, entry.ai_decision = shown, decision
                    entry.ai_level = ai_level
                    sess.flush()
                    audit(sess, actor, "grade", "grade_entry", entry.id, old, new, at=self.clock())
            n += 1
        if replace:
            stale = [e for key, e in existing.items() if key not in written]
            for entry in stale:
                old = _entry_dict(entry)
                sess.delete(entry)
                sess.flush()
                audit(sess, actor, "delete_grade", "grade_entry", entry.id, old, None, at=self.clock())
        return n

    def save_draft(self, reader: str, reading_id: int, grades: Iterable[Grade], replace: bool = False) -> int:
        """Save (insert or update) grades of a draft read; committed at once. Returns how many.

        ``replace``: ``grades`` are the whole draft; entries not among them are deleted (audited).
        """
        with self.session() as sess:
            rdr = self._reader(sess, reader)
            rd = self._reading(sess, rdr, reading_id, lock=True)
            if rd.status != "draft":
                raise DatabaseError(f"read {reading_id} is submitted and immutable; submit a correction")
            return self._write_grades(sess, reader, rd, grades, replace)

    def submit(self, reader: str, reading_id: int, grades: Iterable[Grade] = (), replace: bool = False) -> OpenRead:
        """Save the last ``grades`` and submit the read: records the duration and makes it immutable.

        ``replace``: ``grades`` are the whole read; draft entries not among them are deleted first.
        """
        with self.session() as sess:
            rdr = self._reader(sess, reader)
            rd = self._reading(sess, rdr, reading_id, lock=True)
            if rd.status != "draft":
                raise DatabaseError(f"read {reading_id} is already submitted")
            self._write_grades(sess, reader, rd, grades, replace)
            n = sess.scalar(select(func.count()).where(GradeEntry.reading_id == rd.id))
            if not n:
                raise DatabaseError(f"read {reading_id} has no grades; nothing to submit")
            now = self.clock()
            duration = max((now - rd.started_at).total_seconds(), 0.0)
            # Conditional update: of two concurrent submits exactly one changes the row.
            res = sess.execute(
                update(Reading).where(Reading.id == rd.id, Reading.status == "draft")
                .values(status="submitted", submitted_at=now, duration_s=duration)
                .execution_options(synchronize_session=False)
            )
            if res.rowcount != 1:
                raise DatabaseError(f"read {reading_id} is already submitted")
            audit(sess, reader, "submit", "reading", rd.id, {"status": "draft"},
                  {"status": "submitted", "duration_s": duration, "grades": n}, at=now)
            sess.expire(rd)
            return self._open_read(sess, rd)

    def correct(self, reader: str, reading_id: int, grades: Iterable[Grade], reason: str) -> OpenRead:
        """Correct a submitted read: a new submitted version with ``reason``; the old one stays as it was.

        ``grades`` holds the changed entries; the others are carried over from the corrected version.
        """
        reason = (reason or "").strip()
        if not reason:
            raise DatabaseError("a correction needs a reason")
        grades = list(grades)
        with self.session() as sess:
            rdr = self._reader(sess, reader)
            old = self._reading(sess, rdr, reading_id)
            if old.status != "submitted":
                raise DatabaseError(f"read {reading_id} is a draft; edit it with save_draft instead")
            latest = sess.scalar(select(func.max(Reading.version)).where(
                Reading.assignment_id == old.assignment_id))
            if latest != old.version:
                raise DatabaseError(f"read {reading_id} has been corrected already; correct the newest version")
            now = self.clock()
            new = Reading(assignment_id=old.assignment_id, reader_id=rdr.id, arm=old.arm,
                          version=old.version + 1, status="draft", started_at=now,
                          supersedes_id=old.id, correction_reason=reason)
            sess.add(new)
            sess.flush()
            previous = sess.scalars(select(GradeEntry).where(GradeEntry.reading_id == old.id)).all()
            carried = {(e.level, e.pathology): Grade(e.level, e.pathology, e.reader_grade, e.measurement,
                                                     e.ai_level)
                       for e in previous}
            for g in grades:
                carried[(g.level.strip(), g.pathology)] = g
            self._write_grades(sess, reader, new, carried.values())
            sess.execute(
                update(Reading).where(Reading.id == new.id)
                .values(status="submitted", submitted_at=now, duration_s=0.0)
                .execution_options(synchronize_session=False)
            )
            audit(sess, reader, "correct", "reading", new.id,
                  {"reading_id": old.id, "version": old.version,
                   "grades": [_entry_dict(e) for e in previous]},
                  {"reading_id": new.id, "version": new.version, "reason": reason,
                   "changed": [asdict(g) for g in grades]}, at=now)
            sess.expire(new)
            return self._open_read(sess, new)

    # ---------------------------------------------------------------- AI output
    def store_ai_results(self, study: str, case_key: str, results: Iterable[AIGrade],
                         model_version: str = "", actor: str = "ai") -> int:
        """Store (or replace) the AI grades of one case; returns how many were written."""
        with self.session() as sess:
            case = sess.scalar(
                select(Case).join(Study, Study.id == Case.study_id)
                .where(Study.name == study, Case.case_key == case_key)
            )
            if case is None:
                raise DatabaseError(f"case {case_key!r} is not in study {study!r}")
            n = 0
            for r in results:
                grade = check_grade(r.pathology, r.grade)
                row = sess.scalar(select(AIResult).where(AIResult.case_id == case.id, AIResult.level == r.level,
                                                         AIResult.pathology == r.pathology))
                new = {"level": r.level, "pathology": r.pathology, "grade": grade,
                       "confidence": r.confidence, "measurement": r.measurement, "model": model_version}
                old = None
                if row is None:
                    row = AIResult(case_id=case.id, level=r.level, pathology=r.pathology)
                    sess.add(row)
                else:
                    old = {"level": row.level, "pathology": row.pathology, "grade": row.grade,
                           "confidence": row.confidence, "measurement": row.measurement,
                           "model": row.model_version}
                row.grade, row.confidence, row.measurement = grade, r.confidence, r.measurement
                row.model_version = model_version
                sess.flush()
                audit(sess, actor, "ai_result", "ai_result", row.id, old, new, at=self.clock())
                n += 1
            return n

    # -------------------------------------------------------------------- audit
    def audit_trail(self, entity: str | None = None, entity_id: int | None = None) -> list[dict]:
        """Audit records (oldest first), optionally of one entity, with old/new decoded from JSON."""
        with self.session() as sess:
            stmt = select(AuditLog).order_by(AuditLog.id)
            if entity is not None:
                stmt = stmt.where(AuditLog.entity == entity)
            if entity_id is not None:
                stmt = stmt.where(AuditLog.entity_id == entity_id)
            return [
                {"at": a.at, "actor": a.actor, "action": a.action, "entity": a.entity,
                 "entity_id": a.entity_id,
                 "old": None if a.old_value is None else json.loads(a.old_value),
                 "new": None if a.new_value is None else json.loads(a.new_value)}
                for a in sess.scalars(stmt)
            ]
