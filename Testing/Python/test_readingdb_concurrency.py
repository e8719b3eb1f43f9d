"""Many readers submitting at once lose nothing and duplicate nothing (bounded, localhost only)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from readingdb_backends import db_url  # noqa: F401 - fixture
from sqlalchemy import text

from lvp.errors import DatabaseError
from lvp.readingdb import Grade, ReadingDB
from lvp.readingdb.admin import add_assignment, add_cases, add_readers, create_study

LEVELS = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S")


def test_fifty_readers_submit_at_once(db_url):  # noqa: F811
    # SQLite serialises writers (busy timeout); PostgreSQL gets the full 50-way load.
    n_readers = 50 if db_url.startswith("postgresql") else 12
    setup = ReadingDB(db_url)
    create_study(setup, "multi", washout_days=0)
    add_cases(setup, "multi", [{"case_key": "shared"}])
    add_readers(setup, "multi", [{"username": f"r{i:02d}"} for i in range(n_readers)])
    asg = {f"r{i:02d}": add_assignment(setup, "multi", f"r{i:02d}", "shared", "manual", 1)
           for i in range(n_readers)}
    setup.close()

    # One database object (connection pool) like a server would use, sized for the load.
    db = ReadingDB(db_url, upgrade=False, pool_size=n_readers)
    barrier = threading.Barrier(n_readers * 2, timeout=60)
    outcome: dict[str, list] = {"submitted": [], "refused": []}
    lock = threading.Lock()

    def reader_client(name: str, twin: bool) -> None:
        # Two clients per reader (e.g. a double click): both start, save and submit at once.
        barrier.wait()
        grades = [Grade(lvl, "herniation", (i + int(name[1:])) % 4) for i, lvl in enumerate(LEVELS)]
        try:
            # The twin may come after the submit: then even the start is refused.
            read = db.start_read(name, asg[name])
            db.save_draft(name, read.reading_id, grades[:3])
            done = db.submit(name, read.reading_id, grades[3:])
            with lock:
                outcome["submitted"].append((name, done.reading_id))
        except DatabaseError as err:
            assert "submitted" in str(err) or "immutable" in str(err), err
            with lock:
                outcome["refused"].append(name)

    with ThreadPoolExecutor(max_workers=n_readers * 2) as pool:
        futures = [pool.submit(reader_client, f"r{i:02d}", twin)
                   for i in range(n_readers) for twin in (False, True)]
        for f in futures:
            f.result(timeout=120)  # bounded: a hang fails the test instead of blocking CI

    names = sorted(n for n, _ in outcome["submitted"])
    assert names == sorted(asg)  # every reader submitted exactly once ...
    assert sorted(outcome["refused"]) == sorted(asg)  # ... and every twin was refused
    with db.engine.connect() as conn:
        q = lambda sql: conn.execute(text(sql)).all()
        assert q("SELECT COUNT(*) FROM reading")[0][0] == n_readers
        assert q("SELECT COUNT(*) FROM reading WHERE status = 'submitted'")[0][0] == n_readers
        assert q("SELECT COUNT(*) FROM grade_entry")[0][0] == n_readers * len(LEVELS)
        assert q("SELECT COUNT(*) FROM audit_log WHERE action = 'submit'")[0][0] == n_readers
        assert q("SELECT COUNT(*) FROM audit_log WHERE action = 'start'")[0][0] == n_readers
        # Nothing lost: each reader's stored grades are exactly what that reader sent.
        rows = q("SELECT r.username, g.level, g.reader_grade FROM grade_entry g JOIN reading d "
                 "ON d.id = g.reading_id JOIN reader r ON r.id = d.reader_id")
    for name, level, grade in rows:
        assert grade == (LEVELS.index(level) + int(name[1:])) % 4
    db.close()
