"""Study management: create studies, enrol cases and readers, balanced crossover assignment,
reference standard import, progress status and export of the submitted reads.

Over 400 lines on purpose: study set-up, assignment and export share the study's integrity
rules (balanced crossover, one reference per unit); kept together so each rule is checked once.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Iterator
from operator import itemgetter

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


def _submitted_reads(sess: Session, st: Study) -> tuple[dict, dict, dict]:
    """Newest submitted version per assignment, and the original (version 1) read's time and dates.

    Returns {assignment: read row} of the newest versions, {assignment: version-1 row} and
    {case id: (case_key, center)}; rows are plain tuples from one query each (no ORM objects).
    """
    rows = sess.execute(
        select(Reading.id, Reading.assignment_id, Reading.version, Reading.duration_s, Reading.started_at,
               Reading.submitted_at, Reading.correction_reason, Assignment.arm, Assignment.session,
               Assignment.order_index, Assignment.case_id, Reader.username, Reader.center)
        .join(Assignment, Assignment.id == Reading.assignment_id)
        .join(Reader, Reader.id == Reading.reader_id)
        .where(Assignment.study_id == st.id, Reading.status == "submitted")
        .order_by(Reader.username, Assignment.session, Assignment.order_index, Reading.version)
    ).all()
    newest: dict[int, tuple] = {}
    first: dict[int, tuple] = {}
    for r in rows:
        newest[r.assignment_id] = r  # ordered by version: the last one wins
        if r.version == 1:
            first[r.assignment_id] = r
    cases = {cid: (key, center) for cid, key, center in sess.execute(
        select(Case.id, Case.case_key, Case.center).where(Case.study_id == st.id))}
    return newest, first, cases


def _submitted_grades(st: Study, *columns):  # a Select
    """``columns`` of every grade entry of the study's submitted reads (one query, no order)."""
    return (
        select(*columns)
        .join(Reading, Reading.id == GradeEntry.reading_id)
        .join(Assignment, Assignment.id == Reading.assignment_id)
        .where(Assignment.study_id == int(st.id), Reading.status == "submitted")
    )


def _grade_rows(sess: Session, st: Study, ordered: bool = True, chunk: int = 50_000) -> Iterator[tuple]:
    """All grade entries of the study's submitted reads, streamed in chunks (one query).

    ``ordered``: by reader, session, position, level and pathology (the export's order).
    """
    stmt = _submitted_grades(st, GradeEntry.reading_id, GradeEntry.level, GradeEntry.pathology,
                             GradeEntry.reader_grade, GradeEntry.measurement, GradeEntry.ai_grade_shown,
                             GradeEntry.ai_decision)
    if ordered:
        stmt = stmt.join(Reader, Reader.id == Reading.reader_id).order_by(
            Reader.username, Assignment.session, Assignment.order_index, GradeEntry.level, GradeEntry.pathology)
    for rows in _raw_chunks(sess, stmt, chunk):
        yield from rows


def _raw_chunks(sess: Session, stmt, chunk: int = 50_000) -> Iterator[list[tuple]]:  # a Select
    """Rows of ``stmt`` as lists of plain tuples from the DB-API cursor, ``chunk`` at a time (no ORM
    or Row objects).

    Only for statements without user input: parameters are rendered as literals (integers here).
    """
    conn = sess.connection()
    sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(sql)
        while rows := cur.fetchmany(chunk):
            yield rows
    finally:
        cur.close()


def _grade_columns(sess: Session, st: Study, chunk: int = 50_000) -> tuple:
    """Grade entries of the study's submitted reads as columns: reading ids, levels, pathologies, grades,
    measurements (NaN for none).

    Read through the DB-API cursor in chunks and transposed at C speed: half a million grades
    through ORM rows would take seconds. The SQL has no user input (the study id is an integer).
    """
    import numpy as np

    stmt = _submitted_grades(st, GradeEntry.reading_id, GradeEntry.level, GradeEntry.pathology,
                             GradeEntry.reader_grade, GradeEntry.measurement)
    parts: list[list] = [[], [], [], [], []]
    for rows in _raw_chunks(sess, stmt, chunk):
        for i, col in enumerate(parts):  # itemgetter columns: 6x faster than zip(*rows)
            col.extend(map(itemgetter(i), rows))
    return (np.array(parts[0], dtype=np.int64), parts[1], parts[2], np.array(parts[3], dtype=np.int16),
            np.array([np.nan if v is None else v for v in parts[4]], dtype=float))


def _case_tables(sess: Session, st: Study) -> tuple[dict, dict]:
    refs = {(c, lvl, p): (g, m) for c, lvl, p, g, m in sess.execute(
        select(ReferenceGrade.case_id, ReferenceGrade.level, ReferenceGrade.pathology, ReferenceGrade.grade,
               ReferenceGrade.measurement).join(Case, Case.id == ReferenceGrade.case_id)
        .where(Case.study_id == st.id))}
    ais = {(c, lvl, p): (g, conf) for c, lvl, p, g, conf in sess.execute(
        select(AIResult.case_id, AIResult.level, AIResult.pathology, AIResult.grade, AIResult.confidence)
        .join(Case, Case.id == AIResult.case_id).where(Case.study_id == st.id))}
    return refs, ais


def iter_reads(db: ReadingDB, study: str) -> Iterator[dict]:
    """Rows of :func:`export_reads` one at a time (constant memory per row; five queries in all)."""
    with db.session() as sess:
        st = _study(sess, study)
        newest, first, cases = _submitted_reads(sess, st)
        by_reading = {r.id: r for r in newest.values()}
        refs, ais = _case_tables(sess, st)
        base: dict[int, tuple[dict, int]] = {}  # the read's part of its rows (and case), once per read
        for reading_id, level, pathology, grade, meas, shown, decision in _grade_rows(sess, st):
            known = base.get(reading_id)
            if known is None:
                rd = by_reading.get(reading_id)
                if rd is None:  # an older version of a corrected read
                    continue
                case_key, case_center = cases[rd.case_id]
                v1 = first.get(rd.assignment_id)
                known = base[reading_id] = ({
                    "study": st.name, "reader": rd.username, "reader_center": rd.center,
                    "case_key": case_key, "case_center": case_center, "arm": rd.arm,
                    "session": rd.session, "order_index": rd.order_index, "reading_id": rd.id,
                    "version": rd.version, "correction_reason": rd.correction_reason or "",
                    "started_at": rd.started_at.isoformat(), "submitted_at": rd.submitted_at.isoformat(),
                    "duration_s": rd.duration_s, "first_duration_s": v1.duration_s if v1 else None,
                }, rd.case_id)
            head, cid = known
            ref = refs.get((cid, level, pathology))
            ai = ais.get((cid, level, pathology))
            row = dict(head)
            row.update(level=level, pathology=pathology, reader_grade=grade, measurement=meas, ai_grade_shown=shown,
                       ai_decision=decision, ai_grade=ai[0] if ai else None, ai_confidence=ai[1] if ai else None,
                       reference_grade=ref[0] if ref else None, reference_measurement=ref[1] if ref else None)
            yield row


def export_reads(db: ReadingDB, study: str) -> list[dict]:
    """One row per grade of the newest submitted version of every read, with reference and AI grades.

    ``duration_s`` is the reading time of that version; ``first_duration_s`` the time of the original
    read (a correction's own time is not reading time). Rows are ordered by reader, session, position.
    """
    return list(iter_reads(db, study))


def export_columns(db: ReadingDB, study: str) -> dict:
    """The study's submitted reads as columns (numpy arrays and code lists) for the analysis.

    Same content as :func:`export_reads` without building a dict per grade: ``grades`` (one entry
    per grade of the newest version of each read, with the reference and AI grade of its case and
    level), ``reads`` (one per read: times of the original read, for reading time and washout) and
    ``design`` (enrolment and assignments, for the study flow). Codes index the lists ``readers``,
    ``cases``, ``levels`` and ``pathologies``; ``arm`` is 0 manual, 1 AI-assisted.
    """
    import numpy as np  # the database layer itself does not need numpy

    with db.session() as sess:
        st = _study(sess, study)
        newest, first, cases = _submitted_reads(sess, st)
        refs, ais = _case_tables(sess, st)
        enrolled = sorted(sess.scalars(select(Reader.username).join(StudyReader, StudyReader.reader_id == Reader.id)
                                       .where(StudyReader.study_id == st.id)))
        assigned = sess.execute(
            select(Reader.username, Assignment.arm, Assignment.session, func.count())
            .join(Assignment, Assignment.reader_id == Reader.id).where(Assignment.study_id == st.id)
            .group_by(Reader.username, Assignment.arm, Assignment.session)).all()
        readers = sorted({r.username for r in newest.values()} | set(enrolled))
        case_ids = sorted(cases, key=lambda c: cases[c][0])
        case_code = {cid: i for i, cid in enumerate(case_ids)}
        reader_code = {u: i for i, u in enumerate(readers)}
        reads = sorted(newest.values(), key=lambda r: r.id)
        arm_code = {"manual": 0, "ai_assisted": 1}
        r_reader = np.array([reader_code[r.username] for r in reads], dtype=np.int32)
        r_case = np.array([case_code[r.case_id] for r in reads], dtype=np.int32)
        r_arm = np.array([arm_code[r.arm] for r in reads], dtype=np.int8)
        r_session = np.array([r.session for r in reads], dtype=np.int16)
        v1 = [first.get(r.assignment_id) for r in reads]
        r_time = np.array([np.nan if f is None or f.duration_s is None else f.duration_s for f in v1])
        r_start = np.array([f.started_at if f else None for f in v1], dtype="datetime64[s]")
        r_submit = np.array([f.submitted_at if f else None for f in v1], dtype="datetime64[s]")
        r_corrected = np.array([r.version > 1 for r in reads])

        levels: dict[str, int] = {}
        pathologies: dict[str, int] = {}
        ids, lv, pa, gr, me = _grade_columns(sess, st)
        lv = np.array([levels.setdefault(x, len(levels)) for x in lv], dtype=np.int16)
        pa = np.array([pathologies.setdefault(x, len(pathologies)) for x in pa], dtype=np.int16)
        # Only the newest version of each read: reading ids -> positions in the sorted read list.
        read_ids = np.array([r.id for r in reads], dtype=np.int64)
        pos = np.minimum(np.searchsorted(read_ids, ids), max(read_ids.size - 1, 0))
        keep = read_ids[pos] == ids if read_ids.size else np.zeros(ids.size, bool)
        read = pos[keep].astype(np.int32)
        lv, pa, gr, me = lv[keep], pa[keep], gr[keep], me[keep]
        # Reference and AI grades by (case, level, pathology) code: one table lookup per grade.
        shape = (len(case_ids), len(levels) + 1, len(pathologies) + 1)
        ref_g, ref_m, ai_g = np.full(shape, -1, np.int16), np.full(shape, np.nan), np.full(shape, -1, np.int16)
        for (cid, level, path), (g, m) in refs.items():
            if level in levels and path in pathologies:
                ref_g[case_code[cid], levels[level], pathologies[path]] = g
                ref_m[case_code[cid], levels[level], pathologies[path]] = np.nan if m is None else m
        for (cid, level, path), (g, _conf) in ais.items():
            if level in levels and path in pathologies:
                ai_g[case_code[cid], levels[level], pathologies[path]] = g
        case_of = r_case[read]
        grades = {
            "read": read, "reader": r_reader[read], "case": r_case[read], "arm": r_arm[read],
            "session": r_session[read], "level": lv, "pathology": pa, "grade": gr, "measurement": me,
            "ref": ref_g[case_of, lv, pa], "ref_meas": ref_m[case_of, lv, pa], "ai": ai_g[case_of, lv, pa],
        }
        return {
            "study": st.name, "washout_days": st.washout_days, "readers": readers,
            "cases": [cases[c][0] for c in case_ids], "levels": list(levels), "pathologies": list(pathologies),
            "grades": grades,
            "reads": {"reader": r_reader, "case": r_case, "arm": r_arm, "session": r_session,
                      "first_duration_s": r_time, "started_at": r_start, "submitted_at": r_submit,
                      "corrected": r_corrected},
            "design": {"enrolled_readers": enrolled, "enrolled_cases": len(cases),
                       "assignments": [{"reader": u, "arm": a, "session": s_, "n": n} for u, a, s_, n in assigned],
                       "reference_grades": len(refs), "ai_results": len(ais)},
        }
