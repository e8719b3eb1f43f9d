"""A simulated reader study with the paper's design, written into a reading database.

For the documentation's example report and the scale benchmark (benchmarks/bench_study.py), not for
any clinical claim. Cases, readers and the balanced crossover assignment go through the
study-management API; the reference standard, the AI results and the reads are bulk-inserted (reads
as drafts, then submitted in one statement per read, which the schema's rules allow) because 30,000
reads through the per-read API would take most of an hour. Bulk rows write no audit records.

Model (all on a latent severity scale per patient x level x pathology, cut into grades 0-3 so that
about a quarter of the units are positive, grade >= 2): reference = latent; AI = latent + noise;
a manual read = latent + reader bias + larger noise; an AI-assisted read accepts the AI grade with
probability ``accept`` and is otherwise a manual-like read with less noise. Reading time is
log-normal with reader and case effects, times ``time_ratio`` with AI and ``period_ratio`` in
session 2; session 2 starts ``washout_days`` + 2 days after session 1 ends.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import bindparam, insert, select, update

from lvp.readingdb import ReadingDB
from lvp.readingdb.admin import add_cases, add_readers, assign_balanced, create_study
from lvp.readingdb.models import (
    AIResult,
    Assignment,
    Case,
    GradeEntry,
    Reader,
    Reading,
    ReferenceGrade,
    StudyReader,
)

LEVELS = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")
PATHOLOGIES = ("herniation", "canal_stenosis", "lateral_recess_left")
CUTS = (-0.2, 0.55, 1.3)  # latent -> grade 0..3; grade >= 2 above 0.55


def _grade(latent: np.ndarray) -> np.ndarray:
    return np.searchsorted(CUTS, latent).astype(int)


def simulate_study(db: ReadingDB, study: str = "simulated", patients: int = 100, readers: int = 6,
                   seed: int = 0, washout_days: int = 28, accept: float = 0.7, time_ratio: float = 0.61,
                   period_ratio: float = 0.95, levels: tuple[str, ...] = LEVELS,
                   pathologies: tuple[str, ...] = PATHOLOGIES) -> dict:
    """Create study ``study`` with ``patients`` x ``levels`` x ``pathologies`` and ``readers`` readers,
    all reads submitted. Returns the counts written.
    """
    rng = np.random.default_rng(seed)
    sid = create_study(db, study, "simulated reader study (lvp.study.simulate)", washout_days)
    keys = [f"P{i:05d}" for i in range(patients)]
    add_cases(db, study, [{"case_key": k, "center": "AB"[i % 2]} for i, k in enumerate(keys)])
    names = [f"reader{j:02d}" for j in range(readers)]
    add_readers(db, study, [{"username": f"{study}_{n}"} for n in names])
    assign_balanced(db, study, seed=seed)

    n_l, n_p = len(levels), len(pathologies)
    level_effect = np.linspace(-0.4, 0.35, n_l)  # lower lumbar levels degenerate more
    latent = (rng.normal(0, 0.55, (patients, 1, 1)) + level_effect[None, :, None]
              + rng.normal(0, 0.6, (patients, n_l, n_p)))
    ref = _grade(latent)
    ai = _grade(latent + rng.normal(0, 0.35, latent.shape))
    with db.session() as sess:
        # Case keys are unique within a study only: another simulated study uses the same keys.
        case_id = dict(sess.execute(select(Case.case_key, Case.id).where(Case.study_id == sid)).all())
    cells = [(i, lv, p) for i in range(patients) for lv in range(n_l) for p in range(n_p)]
    with db.session() as sess:  # bulk, like the reads (the API writes one audit record per grade)
        sess.execute(insert(ReferenceGrade), [
            {"case_id": case_id[keys[i]], "level": levels[lv], "pathology": pathologies[p],
             "grade": int(ref[i, lv, p]), "source": "simulated"} for i, lv, p in cells])
        sess.execute(insert(AIResult), [
            {"case_id": case_id[keys[i]], "level": levels[lv], "pathology": pathologies[p],
             "grade": int(ai[i, lv, p]), "confidence": 0.9, "model_version": "simulated"} for i, lv, p in cells])

    bias = rng.normal(0, 0.15, readers)
    speed = rng.normal(0, 0.25, readers)
    case_time = rng.normal(0, 0.3, patients)
    with db.session() as sess:
        rows = sess.execute(
            select(Assignment.id, Assignment.reader_id, Assignment.case_id, Assignment.arm, Assignment.session,
                   Assignment.order_index, Reader.username)
            .join(Reader, Reader.id == Assignment.reader_id)
            .join(StudyReader, (StudyReader.reader_id == Reader.id) & (StudyReader.study_id == Assignment.study_id))
            .where(Reader.username.in_([f"{study}_{n}" for n in names]))
            .order_by(Reader.username, Assignment.session, Assignment.order_index)).all()
    index = {k: i for i, k in enumerate(keys)}
    key_of = {v: k for k, v in case_id.items()}
    t0 = datetime(2025, 1, 6, 8, 0)
    clock: dict[tuple[str, int], datetime] = {}
    readings, timing, grades_by_asg = [], {}, {}
    session_end: dict[str, datetime] = {}
    for asg_id, reader_id, asg_case, arm, session, _order, username in rows:
        j = names.index(username[len(study) + 1:])
        i = index[key_of[asg_case]]
        key = (username, session)
        if key not in clock:
            clock[key] = (t0 if session == 1 else session_end[username] + timedelta(days=washout_days + 2))
        mu = np.log(150) + speed[j] + case_time[i] + (np.log(time_ratio) if arm == "ai_assisted" else 0.0)
        mu += np.log(period_ratio) if session == 2 else 0.0
        dur = float(np.exp(mu + rng.normal(0, 0.25)))
        start = clock[key]
        clock[key] = start + timedelta(seconds=dur + 20)
        if session == 1:
            session_end[username] = clock[key]
        readings.append({"assignment_id": asg_id, "reader_id": reader_id, "arm": arm, "version": 1,
                         "status": "draft", "started_at": start})
        timing[asg_id] = (start + timedelta(seconds=dur), dur)
        noise = rng.normal(0, 0.45 if arm == "manual" else 0.35, (n_l, n_p))
        own = _grade(latent[i] + bias[j] + noise)
        if arm == "ai_assisted":
            g = np.where(rng.random((n_l, n_p)) < accept, ai[i], own)
        else:
            g = own
        grades_by_asg[asg_id] = (arm, g, ai[i])
    with db.session() as sess:
        sess.execute(insert(Reading), readings)
    with db.session() as sess:
        ids = dict(sess.execute(select(Reading.assignment_id, Reading.id)
                                .where(Reading.assignment_id.in_(list(timing)))).all())
    entries = []
    for asg_id, (arm, g, a) in grades_by_asg.items():
        for lv in range(n_l):
            for p in range(n_p):
                shown = int(a[lv, p]) if arm == "ai_assisted" else None
                entries.append({"reading_id": ids[asg_id], "arm": arm, "level": levels[lv],
                                "pathology": pathologies[p], "reader_grade": int(g[lv, p]), "measurement": None,
                                "ai_grade_shown": shown,
                                "ai_decision": None if shown is None else
                                ("accepted" if shown == int(g[lv, p]) else "modified")})
    with db.session() as sess:
        for k in range(0, len(entries), 50_000):
            sess.execute(insert(GradeEntry), entries[k:k + 50_000])
    table = Reading.__table__
    with db.session() as sess:
        sess.connection().execute(
            update(table).where(table.c.id == bindparam("rid"))
            .values(status="submitted", submitted_at=bindparam("sub"), duration_s=bindparam("dur")),
            [{"rid": ids[a], "sub": s, "dur": d} for a, (s, d) in timing.items()])
    return {"cases": patients, "readers": readers, "reads": len(readings), "grades": len(entries)}
