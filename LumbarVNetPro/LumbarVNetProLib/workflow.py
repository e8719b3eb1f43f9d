"""The panel's state and actions without Qt: run, results, reader grades, Recompute, reading.

``LumbarVNetProWidget`` keeps one :class:`Workplace` and only wires Qt to it: each button calls
one method here and shows what it returns (progress, rows, lines, messages). So every decision
the panel takes (which model folder, what a finished child means, where a reader's grade goes,
which result folder an AI-assisted case uses, what comes after a submit) runs under pytest on
``slicer-core`` too.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import scene as lvpscene
from .grades import GradeRow, describe_changes, rows_from_report
from .logic import CaseLogic, RunJob
from .parameters import model_dir_of, validate
from .process import ProcessFailed
from .reading import MANUAL, ReadingError, ReadingSession

RUNNING = "running"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"


@dataclass
class PollResult:
    """What a poll of the running analysis found (the widget shows it)."""

    state: str  # RUNNING, DONE, FAILED or CANCELLED
    stage: str | None = None  # the last stage message since the previous poll
    progress: float | None = None  # 0..1 with that message
    error: str = ""  # FAILED: the readable one-line error


@dataclass
class WorklistEntry:
    """One line of the worklist."""

    text: str
    assignmentId: int  # noqa: N815 - Slicer's camelCase, as the widget uses it
    available: bool


def result_dir_for(imageRef: Path | str) -> Path:
    """The precomputed ``lvp infer`` folder of a case image: ``<image>.lvp`` beside it."""
    imageRef = Path(imageRef)
    return imageRef.parent / (imageRef.name + ".lvp")


def worklist_text(item, washout: str = "(washout)") -> str:  # noqa: ANN001 - lvp.readingdb WorkItem
    """``"c2 — ai-assisted — draft"``, with ``washout`` appended when it cannot be started yet."""
    text = f"{item.case_key} — {item.arm.replace('_', '-')} — {item.status}"
    return text if item.available else f"{text} {washout}"


def elapsed_text(seconds: float) -> str:
    """``MM:SS`` of a reading time."""
    return time.strftime("%M:%S", time.gmtime(max(0.0, seconds)))


class Workplace:
    """The current analysis, case nodes, grade rows and reading session of one panel."""

    def __init__(self, logic: CaseLogic) -> None:
        """``logic`` runs the core and owns the scene."""
        self.logic = logic
        self.job: RunJob | None = None
        self.nodes: lvpscene.CaseNodes | None = None
        self.rows: list[GradeRow] = []
        self.session: ReadingSession | None = None
        self.caseKey = ""
        self.arm = ""

    # ------------------------------------------------------------------ run
    def startRun(self, params) -> RunJob:  # noqa: ANN001 - LumbarVNetProParameterNode
        """Start inference with the panel's settings; returns at once (poll with :meth:`poll`).

        ``ValueError`` lists what is wrong with the settings; the model folder is sha256-checked
        before the child starts (:meth:`CaseLogic.startInference`).
        """
        problems = validate(params)
        if problems:
            raise ValueError("\n".join(problems))
        if self.job is not None and self.job.running.poll() is None:
            raise ValueError("an analysis is already running")
        self.job = self.logic.startInference(
            params.inputVolume, params.outputFolder, params.device, model_dir_of(params)
        )
        return self.job

    @property
    def running(self) -> bool:
        """True while an analysis child is started and not yet collected by :meth:`poll`."""
        return self.job is not None

    def poll(self, inputVolume=None, showPlanes: bool = False) -> PollResult:  # noqa: ANN001
        """Progress of the running analysis; when it has ended, load its result (or say why not).

        DONE: the result is in the scene (:attr:`nodes`), replacing the previous result of the same
        volume, and :attr:`rows` hold its grades, reader grades starting at the AI grade. A
        cancelled or failed run loads nothing (and removes nothing).
        """
        if self.job is None:
            return PollResult(CANCELLED)
        stage, progress = None, None
        for message in self.job.running.progress_messages():
            stage, progress = message.stage, message.progress
        if self.job.running.poll() is None:
            return PollResult(RUNNING, stage, progress)
        job, self.job = self.job, None
        if job.running.cancelled:
            return PollResult(CANCELLED, stage, progress)
        try:
            report = self.logic.finishInference(job)
            # A re-run on the same volume replaces its previous result (not a second set of nodes).
            lvpscene.remove_volume_results(self.logic.scene, inputVolume)
            self.nodes = self.logic.loadResult(job.outputDir, inputVolume, "", showPlanes)
        except (ProcessFailed, ValueError, OSError, RuntimeError) as err:
            return PollResult(FAILED, stage, progress, str(err))
        self.rows = rows_from_report(report)
        self.caseKey, self.arm = "", ""
        return PollResult(DONE, stage, progress)

    def cancel(self) -> None:
        """End the running child and everything it started (the next poll says CANCELLED)."""
        if self.job is not None:
            self.job.running.cancel()

    def forgetCase(self) -> None:
        """Drop the case nodes and rows (the scene is closing); the reading session stays."""
        self.nodes = None
        self.rows = []

    # ------------------------------------------------------------- grade edits
    def setReaderGrade(self, rowIndex: int, grade: int | None) -> GradeRow | None:
        """The reader chose a grade in row ``rowIndex``: a draft in a read, and the grade table node.

        ``None`` (the combo box's empty entry) changes nothing. :class:`ReadingError` for a row
        the read does not have.
        """
        if grade is None:
            return None
        row = self.rows[rowIndex]
        if self.session is not None and self.session.current is not None:
            row = self.session.set_grade(row.level, row.pathology, int(grade))
        else:
            row.reader_grade = int(grade)
        if self.nodes is not None and self.nodes.gradeTable is not None:
            lvpscene.write_grade_table(self.nodes.gradeTable, self.rows)
        return row

    def recompute(self, inputVolume, workDir: Path | None = None, progress=None) -> list[str]:  # noqa: ANN001
        """Recompute from the edited segmentation; returns one line per grade that changed.

        In a read the new rows become the draft. ``ReadingError`` without an AI result.
        """
        if self.nodes is None or self.nodes.segmentation is None:
            raise ReadingError("load an AI result first")
        workDir = Path(workDir) if workDir else Path(tempfile.mkdtemp(prefix="lvp-recompute-"))
        rows, changes, _report = self.logic.recompute(
            self.nodes, inputVolume, self.rows, workDir, progress=progress, caseKey=self.caseKey
        )
        self.rows = rows
        if self.session is not None and self.session.current is not None:
            self.session.replace_rows(self.rows)
        return describe_changes(changes)

    # ------------------------------------------------------------------ reading
    def signIn(self, readerId: str, databaseUrl: str, draftDir: Path | None = None, db=None) -> list[WorklistEntry]:  # noqa: ANN001
        """Open the reading database (``db``, else ``databaseUrl``, else the default) and sign in."""
        if db is None:
            from lvp.readingdb import ReadingDB

            db = ReadingDB(databaseUrl or None)
        self.session = ReadingSession(db, readerId, draftDir)
        return self.worklist()

    def worklist(self, washout: str = "(washout)") -> list[WorklistEntry]:
        """The signed-in reader's worklist lines (empty before sign-in)."""
        if self.session is None:
            return []
        return [WorklistEntry(worklist_text(i, washout), i.assignment_id, i.available) for i in self.session.worklist()]

    def pickAssignment(self, assignmentId: int | None = None):  # noqa: ANN201 - WorkItem or None
        """The selected assignment if it is in the worklist, else the next available one (None: done)."""
        session = self._requireSession()
        if assignmentId is not None:
            item = next((i for i in session.worklist() if i.assignment_id == assignmentId), None)
            if item is not None:
                return item
        return session.next_assignment()

    def loadAssignment(
        self,
        item,  # noqa: ANN001 - WorkItem
        loadVolume: Callable[[str], object],
        device: str = "auto",
        showPlanes: bool = False,
    ):  # noqa: ANN201 - the loaded volume node
        """Load a case in its arm: the previous case's nodes go, the read starts (or resumes).

        ``loadVolume(path)`` puts the image into the scene (``slicer.util.loadVolume`` in Slicer).
        The AI-assisted arm uses the case's ``<image>.lvp`` result, running inference (blocking)
        when it is absent; the manual arm reads no AI output at all.
        """
        session = self._requireSession()
        if self.nodes is not None:
            lvpscene.remove_case_nodes(self.logic.scene, self.caseKey)
            self.nodes = None
        imageRef = Path(item.image_ref)
        volume = loadVolume(str(imageRef))
        report, resultDir = None, None
        if item.arm != MANUAL:
            resultDir = result_dir_for(imageRef)
            if not (resultDir / "report.json").is_file():
                job = self.logic.startInference(volume, resultDir, device)
                job.running.wait()
                self.logic.finishInference(job)
            report = lvpscene.load_report(resultDir)
        current = session.start(item.assignment_id, report)
        self.caseKey, self.arm = item.case_key, item.arm
        self.rows = current.rows
        self.nodes = self.logic.loadCase(item.arm, volume, self.rows, resultDir, item.case_key, showPlanes)
        return volume

    @property
    def canRecompute(self) -> bool:
        """Recompute needs a segmentation: an analysis result or an AI-assisted read."""
        return self.nodes is not None and self.nodes.segmentation is not None

    def readingTime(self) -> str | None:
        """``MM:SS`` of the read on screen, or None when no case is being read."""
        current = self.session.current if self.session is not None else None
        return None if current is None else elapsed_text(current.elapsed_s())

    def submit(self):  # noqa: ANN201 - the next WorkItem or None
        """Submit the read on screen; returns the next available assignment (None: worklist done)."""
        session = self._requireSession()
        if session.current is None:
            raise ReadingError("no case is being read")
        session.submit()
        return session.next_assignment()

    def _requireSession(self) -> ReadingSession:
        if self.session is None:
            raise ReadingError("sign in first")
        return self.session
