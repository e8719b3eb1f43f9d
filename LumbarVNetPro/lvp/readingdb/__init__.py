"""The reading database of a reader study (SQLite by default, PostgreSQL for multicentre studies).

Open it by URL (``sqlite:///file.sqlite`` or ``postgresql+psycopg://user@host/db``; default: the
``--db`` option, else ``$LVP_DATABASE_URL``, else ``./lvp_reading.sqlite``); the schema is migrated
to the newest version on opening (Alembic, programmatic)::

    from lvp.readingdb import ReadingDB, Grade, AIGrade

    db = ReadingDB(url)                                   # open + migrate
    db.get_or_create_reader("dr_a", "Dr A", center="Paris")
    items = db.worklist("dr_a")                           # [WorkItem(assignment_id, arm, session, status, ...)]
    read = db.start_read("dr_a", items[0].assignment_id)  # draft + start time; read.ai_results is None
                                                          # in the manual arm, the AI grades in ai_assisted
    db.save_draft("dr_a", read.reading_id, [Grade("L4-L5", "herniation", 2)])  # committed: survives crashes
    # A level the reader renamed keeps the AI grade it was shown: Grade(..., ai_level="L5-S");
    # replace=True drops draft entries not in the list (each deletion is audited).
    db.submit("dr_a", read.reading_id)                    # duration recorded, read immutable
    db.correct("dr_a", read.reading_id, [Grade("L4-L5", "herniation", 3)], reason="missed extrusion")
    db.ai_results("dr_a", assignment_id)                  # only in an opened AI-arm read, and not while
                                                          # the reader's manual read of the case is a draft
    db.store_ai_results("study", "case-001", [AIGrade("L4-L5", "herniation", 2, 0.91, None)])
    db.audit_trail("reading", read.reading_id)

Study management (also the ``lvp study`` command): :mod:`lvp.readingdb.admin` —
``create_study``, ``add_cases``, ``add_readers``, ``assign_balanced``, ``import_reference``,
``study_status``, ``export_reads``.

Rules held by the database itself (constraints and triggers, see :mod:`lvp.readingdb.models` and
:mod:`lvp.readingdb.rules`), and by this API:

* a reader reads and writes only their own assignments;
* a submitted read is immutable; a correction is a new version with a reason, and the audit log
  (append-only) keeps who changed what, when, old -> new;
* AI output is never returned for, nor recorded in, a manual-arm read; it is shown only in an opened
  AI-arm read of the case, never while the same reader's manual read of that case is a draft;
* on PostgreSQL the tables belong to an owner role and LVP runs as an app role without DDL or
  TRUNCATE (:mod:`lvp.readingdb.roles`, ``lvp study db-roles``); reader names are plain words
  (:mod:`lvp.readingdb.names`);
* a reader cannot read the same case in both arms in the same session; session 2 opens after
  session 1 is finished and the study's washout period has passed.

Rule violations raise :class:`lvp.errors.DatabaseError`.
"""

from lvp.readingdb.database import DEFAULT_URL, ENV_VAR, resolve_url
from lvp.readingdb.scales import ARMS, SCALES, Scale, scale_for
from lvp.readingdb.service import AIGrade, Grade, OpenRead, ReadingDB, WorkItem

__all__ = [
    "ARMS",
    "DEFAULT_URL",
    "ENV_VAR",
    "SCALES",
    "AIGrade",
    "Grade",
    "OpenRead",
    "ReadingDB",
    "Scale",
    "WorkItem",
    "resolve_url",
    "scale_for",
]
