"""The reading workflow: sign-in, worklist, blinded case loading, drafts, timer and submit.

Talks to the reading database through :class:`lvp.readingdb.ReadingDB` (passed in, so a test
or a multicentre PostgreSQL set-up gives its own). Every grade change is saved as a draft in
the database (committed at once: it survives a Slicer crash and is never counted as
submitted) and, as a second line of defence, in a local JSON file that is removed on submit.

Blinding: in the manual arm this module never asks the database for AI output and the rows it
builds carry no AI grade, confidence or measurement; the module's logic loads no AI node.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .grades import LUMBAR_LEVELS, PATHOLOGIES, GradeRow, manual_rows, missing_grades, rows_from_report

MANUAL = "manual"
AI_ASSISTED = "ai_assisted"


DATABASE_ENV = "LVP_DATABASE_URL"  # the core's variable (lvp.readingdb.database.ENV_VAR)
DATABASE_FILE = "lvp_reading.sqlite"


class ReadingError(RuntimeError):
    """A reading-workflow step the reader must fix (shown as a message, not a traceback)."""


def user_data_dir(environ: dict | None = None, platform: str | None = None) -> Path:
    """The per-user data folder of LumbarVNetPro (absolute, whatever Slicer's working directory).

    Windows ``%LOCALAPPDATA%``, macOS ``~/Library/Application Support``, else ``$XDG_DATA_HOME``
    or ``~/.local/share``; then ``LumbarVNetPro``.
    """
    import sys

    environ = os.environ if environ is None else environ
    platform = platform or sys.platform
    home = Path(environ.get("HOME") or environ.get("USERPROFILE") or Path.home())
    if platform.startswith("win"):
        base = Path(environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return (base / "LumbarVNetPro").absolute()


def default_database_url(dataDir: Path | None = None) -> str:
    """``sqlite:///<absolute user data folder>/lvp_reading.sqlite`` (the folder is created)."""
    folder = Path(dataDir) if dataDir else user_data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / DATABASE_FILE).absolute().as_posix()}"


def url_without_password(url: str) -> str:
    """``url`` with any password removed (``postgresql://u:secret@h/db`` -> ``postgresql://u@h/db``).

    What may be remembered in the application settings: a password is never written to disk by
    the panel (it comes from ``LVP_DATABASE_URL``, the reader's entry this session, or ``.pgpass``).
    """
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(str(url))
    if parts.password is None:
        return str(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}@{host}" if parts.username else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def database_url(entered: str = "", environ: dict | None = None, dataDir: Path | None = None) -> str:
    """The reading database a sign-in opens: what the reader entered, else ``$LVP_DATABASE_URL``, else the default."""
    environ = os.environ if environ is None else environ
    return (entered or "").strip() or environ.get(DATABASE_ENV, "").strip() or default_database_url(dataDir)


@dataclass
class CurrentRead:
    """The read on screen."""

    assignment_id: int
    reading_id: int
    arm: str
    case_key: str
    image_ref: str
    rows: list[GradeRow]
    loaded_at: float  # time.monotonic() at case load: the on-screen timer
    resumed: bool = False

    def elapsed_s(self) -> float:
        """Seconds since the case was loaded in this Slicer session."""
        return time.monotonic() - self.loaded_at


class ReadingSession:
    """One reader's session against the reading database."""

    def __init__(self, db, reader: str, draftDir: Path | None = None) -> None:  # ReadingDB
        """Sign ``reader`` in (the reader must exist in the database)."""
        reader = (reader or "").strip()
        if not reader:
            raise ReadingError("enter your reader ID to sign in")
        from lvp.readingdb.names import check_username  # the core's rule (the ID names a drafts folder)

        try:
            reader = check_username(reader)
        except Exception as err:  # a DatabaseError, shown to the reader
            raise ReadingError(str(err)) from None
        self.db = db
        self.reader = reader
        self.draftDir = Path(draftDir) if draftDir else None
        self.current: CurrentRead | None = None
        # Fails early with the database's own message for an unknown reader.
        self.db.worklist(self.reader)

    # ------------------------------------------------------------------ worklist
    def worklist(self) -> list:
        """The reader's assignments (``WorkItem``: arm, status, availability) in reading order."""
        return self.db.worklist(self.reader)

    def next_assignment(self):  # WorkItem or None
        """The first available assignment not yet submitted, or None when the worklist is done."""
        for item in self.worklist():
            if item.status != "submitted" and item.available:
                return item
        return None

    # ---------------------------------------------------------------------- load
    def start(self, assignmentId: int, report: dict | None = None) -> CurrentRead:
        """Start or resume the read of an assignment and build its grade rows.

        ``report`` (the case's ``report.json``) is used only in the AI-assisted arm; in the manual
        arm it is ignored so that nothing of the AI can reach the reader.
        """
        read = self.db.start_read(self.reader, assignmentId)
        if read.arm == MANUAL:
            levels = list(LUMBAR_LEVELS)
            rows = manual_rows(levels)
        else:
            rows = self._ai_rows(read.ai_results or [], report)
        # Resume: the database draft first, then the local backup (it may hold the last changes).
        if read.arm != MANUAL and read.grades:
            rows = self._resume_ai_rows(rows, read.grades)
        by_key = {row.key: row for row in rows}
        for grade in read.grades:
            row = by_key.get((grade.level, grade.pathology))
            if row is None:
                row = GradeRow(grade.level, grade.pathology)
                rows.append(row)
                by_key[row.key] = row
            row.reader_grade = grade.grade
        local = self._read_local(read.reading_id)
        for item in local.get("rows", []):
            row = by_key.get((item["level"], item["pathology"]))
            if row is not None and item.get("reader_grade") is not None:
                row.reader_grade = int(item["reader_grade"])
        self.current = CurrentRead(
            assignment_id=read.assignment_id,
            reading_id=read.reading_id,
            arm=read.arm,
            case_key=read.case_key,
            image_ref=read.image_ref,
            rows=rows,
            loaded_at=time.monotonic(),
            resumed=bool(read.grades or local),
        )
        return self.current

    @staticmethod
    def _resume_ai_rows(rows: list[GradeRow], grades: list) -> list[GradeRow]:
        """The AI rows as the draft left them: renamed levels under their new name.

        A draft holds the rows the reader graded; a renamed level's rows are under the new name with
        ``ai_level`` naming the old one, so the old name's row is not shown twice.
        """
        by_ai_key = {row.key: row for row in rows}
        renamed = {g.ai_level: g.level for g in grades if g.ai_level}  # old level name -> new
        kept = []
        for grade in grades:
            row = by_ai_key.pop((grade.ai_level or grade.level, grade.pathology), None)
            if row is None:
                continue
            if grade.ai_level:
                row.level, row.ai_level = grade.level, grade.ai_level
            kept.append(row)
        # Rows the reader has not reviewed yet have no draft entry: they stay, unreviewed, under
        # their level's new name when the reader renamed that level.
        for row in by_ai_key.values():
            if row.level in renamed:
                row.level, row.ai_level = renamed[row.level], row.level
            kept.append(row)
        return kept

    @staticmethod
    def _ai_rows(ai_results: list, report: dict | None) -> list[GradeRow]:
        # The AI grade shown is the database's (it is what the read records as shown); the
        # report adds the measurement behind it where it has the same level and pathology.
        from_report = {row.key: row for row in rows_from_report(report or {})}
        rows = []
        for ai in ai_results:
            if ai.pathology not in PATHOLOGIES:
                continue
            base = from_report.get((ai.level, ai.pathology))
            # No reader grade yet: a row is accepted only when the reader accepts it.
            rows.append(
                GradeRow(
                    level=ai.level,
                    pathology=ai.pathology,
                    ai_grade=ai.grade,
                    confidence=ai.confidence if ai.confidence is not None else (base.confidence if base else None),
                    measurement=base.measurement if base else "",
                    value=ai.measurement if ai.measurement is not None else (base.value if base else None),
                    note=base.note if base else "",
                    calibrated=base.calibrated if base else None,
                )
            )
        # A grade the AI could not give is in the report only (the database stores given grades).
        given = {row.key for row in rows}
        rows += [row for key, row in from_report.items() if row.ai_grade is None and key not in given]
        if not given:
            rows = list(from_report.values())
        return rows

    # --------------------------------------------------------------- grade edits
    def set_grade(self, level: str, pathology: str, grade: int) -> GradeRow:
        """The reader sets one grade; saved as a draft (database and local file) at once."""
        current = self._require_current()
        row = next((r for r in current.rows if r.key == (level, pathology)), None)
        if row is None:
            raise ReadingError(f"no {pathology} row at level {level} in this read")
        row.reader_grade = int(grade)
        self.save_draft()
        return row

    def replace_rows(self, rows: list[GradeRow]) -> None:
        """Take the rows of a Recompute (AI-assisted arm only) and save them as the draft.

        Recompute keeps the reader's own grades (see :func:`grades.apply_recompute`); the read
        then goes on with the re-measured rows, so submit sends what the table shows.
        """
        current = self._require_current()
        if current.arm == MANUAL:
            raise ReadingError("the manual arm has no AI result to recompute")
        current.rows = list(rows)
        self.save_draft()

    def save_draft(self) -> None:
        """Save the graded rows to the database draft and the local backup file."""
        current = self._require_current()
        self._write_local(current)
        graded = [row for row in current.rows if row.reader_grade is not None]
        if graded:
            # The whole draft: entries of a level renamed or gone on Recompute are dropped.
            self.db.save_draft(self.reader, current.reading_id, self._grades(graded), replace=True)

    def submit(self):  # OpenRead
        """Submit the current read (every row must be graded); returns the submitted read."""
        current = self._require_current()
        missing = missing_grades(current.rows)
        if missing:
            shown = ", ".join(f"{lvl} {p}" for lvl, p in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise ReadingError(f"grade every row before submitting; missing: {shown}{more}")
        submitted = self.db.submit(self.reader, current.reading_id, self._grades(current.rows), replace=True)
        local = self._local_path(current.reading_id)
        if local is not None:
            local.unlink(missing_ok=True)
        self.current = None
        return submitted

    # ------------------------------------------------------------------ helpers
    def _require_current(self) -> CurrentRead:
        if self.current is None:
            raise ReadingError("no case is loaded; pick one from the worklist")
        return self.current

    @staticmethod
    def _grades(rows: list[GradeRow]) -> list:
        from lvp.readingdb import Grade

        # ai_level only in the AI arm's rows (manual rows never carry one): the database pairs the
        # grade with the AI grade shown at the level the AI graded, before the reader's rename.
        return [Grade(r.level, r.pathology, int(r.reader_grade), r.value, r.ai_level) for r in rows]

    def _local_path(self, readingId: int) -> Path | None:
        if self.draftDir is None:
            return None
        folder = self.draftDir / self.reader
        # Never outside the drafts folder, whatever the reader ID (it is checked at sign-in too).
        if folder.resolve().parent != self.draftDir.resolve():
            raise ReadingError(f"reader ID {self.reader!r} cannot name a drafts folder")
        return folder / f"read-{readingId}.json"

    def _write_local(self, current: CurrentRead) -> None:
        path = self._local_path(current.reading_id)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "reader": self.reader,
            "reading_id": current.reading_id,
            "assignment_id": current.assignment_id,
            "arm": current.arm,
            "status": "draft",
            "rows": [row.to_dict() for row in current.rows],
        }
        # Write then rename, so a crash mid-write leaves the previous backup intact.
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)

    def _read_local(self, readingId: int) -> dict:
        path = self._local_path(readingId)
        if path is None or not path.is_file():
            return {}
        try:
            return json.loads(path.read_text())
        except ValueError:
            return {}
