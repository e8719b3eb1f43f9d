"""Study management: create studies, enrol cases and readers, balanced crossover assignment,
reference standard import, progress status and export of the submitted reads.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lvp.errors import DatabaseError
from lvp.readingdb.models import (
    AIResult,
    Assignment,
    Case,
    GradeEntry,
    Reader,
    Reading,
    ReferenceGrade,
    Study,
    StudyReader,
)
from lvp.readingdb.scales import check_arm, check_grade
from lvp.readingdb.service import ReadingDB, audit


def _study(sess: Session, name: str) -> Study:
    st = sess.scalar(select(Study).where(Study.name == name))
    if st is None:
        raise DatabaseError(f"no study named {name!r}; create it with 'lvp study create'")
    return st


def create_study(db: ReadingDB, name: str, description: str = "", washout_days: int = 28,
                 actor: str = "admin") -> int:
    """Create a study; ``washout_days`` separate a reader's sessions. Returns its id."""
    name = name.strip()
    if not name:
        raise DatabaseError("a study needs a name")
    if washout_days < 0:
        raise DatabaseError("washout days cannot be negative")
    with db.session() as sess:
        if sess.scalar(select(Study.id).where(Study.name == name)) is not None:
            raise DatabaseError(f"study {name!r} already exists")
        st = Study(name=name, description=description, washout_days=washout_days, created_at=db.clock())
        sess.add(st)
        sess.flush()
        audit(sess, actor, "create", "study", st.id, None,
              {"name": name, "washout_days": washout_days}, at=db.clock())
        return st.id


def add_cases(db: ReadingDB, study: str, cases: Iterable[dict], actor: str = "admin") -> int:
    """Add cases (dicts with ``case_key``, optional ``image_ref`` and ``center``); existing keys are skipped."""
    with db.session() as sess:
        st = _study(sess, study)
        existing = set(sess.scalars(select(Case.case_key).where(Case.study_id == st.id)))
        n = 0
        for row in cases:
            key = str(row.get("case_key", "")).strip()
            if not key:
                raise DatabaseError("every case needs a case_key (de-identified)")
            if key in existing:
                continue
            case = Case(study_id=st.id, case_key=key, image_ref=str(row.get("image_ref", "") or ""),
                        center=str(row.get("center", "") or ""))
            sess.add(case)
            sess.flush()
            existing.add(key)
            audit(sess, actor, "create", "case", case.id, None,
                  {"case_key": key, "image_ref": case.image_ref}, at=db.clock())
            n += 1
        return n


def add_readers(db: ReadingDB, study: str, readers: Iterable[dict], actor: str = "admin") -> int:
    """Enrol readers (dicts with ``username``, optional ``display_name``, ``center``) in a study."""
    rows = list(readers)
    ids = [db.get_or_create_reader(str(r["username"]), str(r.get("display_name", "") or ""),
                                   str(r.get("center", "") or "")) for r in rows]
    with db.session() as sess:
        st = _study(sess, study)
        enrolled = set(sess.scalars(select(StudyReader.reader_id).where(StudyReader.study_id == st.id)))
        n = 0
        for rid in ids:
            if rid in enrolled:
                continue
            sess.add(StudyReader(study_id=st.id, reader_id=rid))
            enrolled.add(rid)
            audit(sess, actor, "enrol", "reader", rid, None, {"study": study}, at=db.clock())
            n += 1
        return n


def assign_balanced(db: ReadingDB, study: str, seed: int = 0, actor: str = "admin") -> int:
    """Balanced two-session crossover: every reader reads every case once per arm.

    The cases are shuffled (``seed``) and split in halves A and B. Session 1: A manual, B AI-assisted;
    session 2 (after the washout) the other way round. Every second reader (by user name) starts with
    the opposite allocation, so each case is read first without AI by half of the readers. The order
    within a session is shuffled per reader, mixing arms. Returns the number of assignments.
    """
    rng = random.Random(seed)
    with db.session() as sess:
        st = _study(sess, study)
        if sess.scalar(select(func.count()).where(Assignment.study_id == st.id)):
            raise DatabaseError(f"study {study!r} already has assignments")
        cases = list(sess.scalars(select(Case).where(Case.study_id == st.id).order_by(Case.case_key)))
        readers = list(sess.scalars(
            select(Reader).join(StudyReader, StudyReader.reader_id == Reader.id)
            .where(StudyReader.study_id == st.id).order_by(Reader.username)))
        if not cases or not readers:
            raise DatabaseError(f"study {study!r} needs cases and readers before assignment")
        rng.shuffle(cases)
        half = (len(cases) + 1) // 2
        groups = (cases[:half], cases[half:])
        n = 0
        for k, reader in enumerate(readers):
            first, second = (groups[0], groups[1]) if k % 2 == 0 else (groups[1], groups[0])
            plan = {1: [(c, "manual") for c in first] + [(c, "ai_assisted") for c in second],
                    2: [(c, "ai_assisted") for c in first] + [(c, "manual") for c in second]}
            for session, items in plan.items():
                rng.shuffle(items)
                for order, (case, arm) in enumerate(items):
                    sess.add(Assignment(study_id=st.id, reader_id=reader.id, case_id=case.id, arm=arm,
                                        session=session, order_index=order))
                    n += 1
        sess.flush()
        audit(sess, actor, "assign", "study", st.id, None,
              {"assignments": n, "readers": len(readers), "cases": len(cases), "seed": seed}, at=db.clock())
        return n


def add_assignment(db: ReadingDB, study: str, reader: str, case_key: str, arm: str, session: int,
                   order_index: int = 0, actor: str = "admin") -> int:
    """Add one assignment by hand (the schema refuses both arms of a case in one session)."""
    check_arm(arm)
    with db.session() as sess:
        st = _study(sess, study)
        rdr = sess.scalar(select(Reader).where(Reader.username == reader))
        case = sess.scalar(select(Case).where(Case.study_id == st.id, Case.case_key == case_key))
        if rdr is None or case is None:
            raise DatabaseError(f"unknown reader {reader!r} or case {case_key!r}")
        asg = Assignment(study_id=st.id, reader_id=rdr.id, case_id=case.id, arm=arm, session=session,
                         order_index=order_index)
        sess.add(asg)
        sess.flush()
        audit(sess, actor, "assign", "assignment", asg.id, None,
              {"reader": reader, "case": case_key, "arm": arm, "session": session}, at=db.clock())
        return asg.id


def import_reference(db: ReadingDB, study: str, rows: Iterable[dict], actor: str = "admin") -> int:
    """Import reference-standard grades (``case_key, level, pathology, grade[, measurement, source]``).

    A changed reference grade is updated and the change (old -> new) is kept in the audit log.
    """
    with db.session() as sess:
        st = _study(sess, study)
        cases = {c.case_key: c.id for c in sess.scalars(select(Case).where(Case.study_id == st.id))}
        n = 0
        for row in rows:
            key = str(row.get("case_key", "")).strip()
            if key not in cases:
                raise DatabaseError(f"reference for unknown case {key!r} of study {study!r}")
            level, pathology = str(row["level"]).strip(), str(row["pathology"]).strip()
            grade = check_grade(pathology, int(row["grade"]))
            meas = row.get("measurement")
            meas = None if meas in (None, "") else float(meas)
            source = str(row.get("source", "") or "")
            ref = sess.scalar(select(ReferenceGrade).where(
                ReferenceGrade.case_id == cases[key], ReferenceGrade.level == level,
                ReferenceGrade.pathology == pathology))
            new = {"case_key": key, "level": level, "pathology": pathology, "grade": grade,
                   "measurement": meas, "source": source}
            old = None
            if ref is None:
                ref = ReferenceGrade(case_id=cases[key], level=level, pathology=pathology)
                sess.add(ref)
            else:
                old = {"case_key": key, "level": level, "pathology": pathology, "grade": ref.grade,
                       "measurement": ref.measurement, "source": ref.source}
                if old == new:
                    continue
            ref.grade, ref.measurement, ref.source = grade, meas, source
            sess.flush()
            audit(sess, actor, "reference", "reference_grade", ref.id, old, new, at=db.clock())
            n += 1
        return n


def study_status(db: ReadingDB, study: str) -> dict:
    """Progress of a study: counts of cases, readers, reference and AI coverage, reads per reader."""
    with db.session() as sess:
        st = _study(sess, study)
        case_ids = select(Case.id).where(Case.study_id == st.id)
        out = {
            "study": st.name,
            "washout_days": st.washout_days,
            "cases": sess.scalar(select(func.count()).select_from(case_ids.subquery())),
            "readers": sess.scalar(select(func.count()).where(StudyReader.study_id == st.id)),
            "assignments": sess.scalar(select(func.count()).where(Assignment.study_id == st.id)),
            "reference_grades": sess.scalar(select(func.count()).where(ReferenceGrade.case_id.in_(case_ids))),
            "ai_results": sess.scalar(select(func.count()).where(AIResult.case_id.in_(case_ids))),
            "per_reader": {},
        }
        rows = sess.execute(
            select(Reader.username, Assignment.arm, Assignment.id)
            .join(Assignment, Assignment.reader_id == Reader.id).where(Assignment.study_id == st.id)
        ).all()
        status = dict(sess.execute(
            select(Reading.assignment_id, func.max(Reading.status))
            .join(Assignment, Assignment.id == Reading.assignment_id)
            .where(Assignment.study_id == st.id).group_by(Reading.assignment_id)).all())
        per: dict[str, Counter] = {}
        for username, arm, aid in rows:
            # 'submitted' > 'draft' alphabetically, so max() is the furthest state of any version.
            per.setdefault(username, Counter())[f"{arm}:{status.get(aid, 'not_started')}"] += 1
        out["per_reader"] = {k: dict(sorted(v.items())) for k, v in sorted(per.items())}
        return out


EXPORT_FIELDS = [
    "study", "reader", "reader_center", "case_key", "case_center", "arm", "session", "order_index",
    "reading_id", "version", "correction_reason", "started_at", "submitted_at", "duration_s",
    "first_duration_s", "level", "pathology", "reader_grade", "measurement", "ai_grade_shown",
    "ai_decision", "ai_grade", "ai_confidence", "reference_grade", "reference_measurement",
]


def export_reads(db: ReadingDB, study: str) -> list[dict]:
    """One row per grade of the newest submitted version of every read, with reference and AI grades.

    ``duration_s`` is the reading time of that version; ``first_duration_s`` the time of the original
    read (a correction's own time is not reading time).
    """
    with db.session() as sess:
        st = _study(sess, study)
        reads = sess.execute(
            select(Reading, Assignment, Reader, Case)
            .join(Assignment, Assignment.id == Reading.assignment_id)
            .join(Reader, Reader.id == Reading.reader_id)
            .join(Case, Case.id == Assignment.case_id)
            .where(Assignment.study_id == st.id, Reading.status == "submitted")
            .order_by(Reader.username, Assignment.session, Assignment.order_index, Reading.version)
        ).all()
        newest: dict[int, tuple] = {}
        first_duration: dict[int, float | None] = {}
        for rd, asg, rdr, case in reads:
            newest[asg.id] = (rd, asg, rdr, case)  # ordered by version: the last one wins
            if rd.version == 1:
                first_duration[asg.id] = rd.duration_s
        refs = {(r.case_id, r.level, r.pathology): r for r in sess.scalars(
            select(ReferenceGrade).join(Case, Case.id == ReferenceGrade.case_id).where(Case.study_id == st.id))}
        ais = {(a.case_id, a.level, a.pathology): a for a in sess.scalars(
            select(AIResult).join(Case, Case.id == AIResult.case_id).where(Case.study_id == st.id))}
        out = []
        for aid, (rd, asg, rdr, case) in newest.items():
            for e in sess.scalars(select(GradeEntry).where(GradeEntry.reading_id == rd.id)
                                  .order_by(GradeEntry.level, GradeEntry.pathology)):
                ref = refs.get((case.id, e.level, e.pathology))
                ai = ais.get((case.id, e.level, e.pathology))
                out.append({
                    "study": st.name, "reader": rdr.username, "reader_center": rdr.center,
                    "case_key": case.case_key, "case_center": case.center, "arm": asg.arm,
                    "session": asg.session, "order_index": asg.order_index, "reading_id": rd.id,
                    "version": rd.version, "correction_reason": rd.correction_reason or "",
                    "started_at": rd.started_at.isoformat(), "submitted_at": rd.submitted_at.isoformat(),
                    "duration_s": rd.duration_s, "first_duration_s": first_duration.get(aid),
                    "level": e.level, "pathology": e.pathology, "reader_grade": e.reader_grade,
                    "measurement": e.measurement, "ai_grade_shown": e.ai_grade_shown,
                    "ai_decision": e.ai_decision, "ai_grade": ai.grade if ai else None,
                    "ai_confidence": ai.confidence if ai else None,
                    "reference_grade": ref.grade if ref else None,
                    "reference_measurement": ref.measurement if ref else None,
                })
        return out
