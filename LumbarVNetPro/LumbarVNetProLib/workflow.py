"""The panel's state and actions without Qt: run, results, reader grades, Recompute, reading.

``LumbarVNetProWidget`` keeps one :class:`Workplace` and only wires Qt to it: each button calls
one method here and shows what it returns (progress, rows, lines, messages). So every decision
the panel takes (which volume a result belongs to, what a finished child means, where a reader's
grade goes, which result folder an AI-assisted case uses, what comes after a submit, what the
blinded arm may not see) runs under pytest on ``slicer-core`` too.

Everything slow runs in a child process and is polled (:meth:`Workplace.poll`), one job at a
time: an analysis (*Run analysis*), the AI result of an AI-assisted case that has none yet, a
Recompute, a dependency install. The panel stays responsive and each can be cancelled.

Over 400 lines on purpose: one state machine (the Workplace) whose transitions must be
read together (one job at a time, blinded arm, submit order).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lvp.io.dicomweb import case_folder, fetch_case, is_dicomweb

from . import scene as lvpscene
from .grades import GradeRow, describe_changes, grade_values, numbering_note, rows_from_report
from .logic import INPUT_NAME, CaseLogic, RecomputeJob, RunJob
from .parameters import model_dir_of, validate
from .process import ProcessFailed, stage_label
from .reading import MANUAL, ReadingError, ReadingSession

RUNNING = "running"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
# A run finished while a read was open: its result is kept on disk, not shown (see poll).
WITHHELD = "withheld"

# Job kinds.
ANALYSIS = "analysis"
CASE = "case"
RECOMPUTE = "recompute"
INSTALL = "install"


@dataclass
class PollResult:
    """What a poll of the running job found (the widget shows it)."""

    state: str  # RUNNING, DONE, FAILED, CANCELLED or WITHHELD
    stage: str | None = None  # the last stage message since the previous poll, readable
    progress: float | None = None  # 0..1 with that message
    error: str = ""  # FAILED / WITHHELD: the readable one-line reason
    kind: str = ANALYSIS
    lines: list[str] = field(default_factory=list)  # RECOMPUTE: one line per changed grade


@dataclass
class WorklistEntry:
    """One line of the worklist."""

    text: str
    assignmentId: int  # noqa: N815 - Slicer's camelCase, as the widget uses it
    available: bool
    status: str = ""


@dataclass
class _Job:
    """The one job the panel runs at a time."""

    kind: str
    running: object  # a process.RunningProcess (or anything with its poll/cancel/progress interface)
    run: RunJob | None = None
    recompute: RecomputeJob | None = None
    context: dict = field(default_factory=dict)


def result_dir_for(imageRef: Path | str) -> Path:
    """The precomputed ``lvp infer`` folder of a case image: ``<image>.lvp`` beside it (a DICOMweb
    case: beside its cached series, :func:`lvp.io.dicomweb.case_folder`).
    """
    if is_dicomweb(imageRef):
        imageRef = case_folder(str(imageRef))
    imageRef = Path(imageRef)
    return imageRef.parent / (imageRef.name + ".lvp")


def worklist_text(item, washout: str = "(washout)") -> str:  # lvp.readingdb WorkItem
    """``"c2 — AI-assisted — draft"``, with ``washout`` appended when it cannot be started yet."""
    arm = "manual" if item.arm == MANUAL else "AI-assisted"
    status = str(item.status).replace("_", " ")
    text = f"{item.case_key} — {arm} — {status}"
    return text if item.available else f"{text} {washout}"


def elapsed_text(seconds: float) -> str:
    """``MM:SS`` of a reading time."""
    return time.strftime("%M:%S", time.gmtime(max(0.0, seconds)))


def load_case_image(imageRef: Path | str, loadVolume: Callable, loadDicom: Callable | None = None):
    """Put a worklist case's image into the scene: a file through ``loadVolume``, a folder of
    DICOM files through ``loadDicom`` (Slicer's DICOM import, which keeps the series UID and
    applies the acquisition-geometry regularisation); a ``dicomweb+http(s)://...?study=UID`` case is
    fetched once into a cache folder and loaded the same way. ``ReadingError`` names what is wrong.
    """
    path = Path(imageRef) if not is_dicomweb(imageRef) else None
    if path is None:
        from lvp.errors import InputError

        try:
            path = fetch_case(str(imageRef))
        except InputError as err:
            raise ReadingError(str(err)) from None
    if path.is_dir():
        if loadDicom is None:
            raise ReadingError(f"case image {path} is a DICOM folder, and DICOM import is not available")
        volume = loadDicom(str(path))
    elif path.is_file():
        volume = loadVolume(str(path))
    else:
        raise ReadingError(f"case image not found: {path}")
    if volume is None:
        raise ReadingError(f"no image volume could be loaded from {path}")
    return volume


class Workplace:
    """The current job, case nodes, grade rows and reading session of one panel."""

    def __init__(self, logic: CaseLogic) -> None:
        """``logic`` runs the core and owns the scene."""
        self.logic = logic
        self.job: _Job | None = None
        self.nodes: lvpscene.CaseNodes | None = None
        self.rows: list[GradeRow] = []
        self.session: ReadingSession | None = None
        self.caseKey = ""
        self.arm = ""
        self.numbering = ""  # the numbering warning of the result on screen ("" when confident)
        self.resultVolume = None  # the volume the analysis result on screen belongs to

    # ------------------------------------------------------------------ jobs
    @property
    def running(self) -> bool:
        """True while a job is started and not yet collected by :meth:`poll`."""
        return self.job is not None

    @property
    def runningKind(self) -> str:
        """The kind of the running job (``""`` when none)."""
        return self.job.kind if self.job is not None else ""

    def _requireIdle(self) -> None:
        if self.job is not None:
            what = {ANALYSIS: "an analysis", CASE: "the AI result of a case", RECOMPUTE: "a Recompute"}
            running = what.get(self.job.kind, "a package install")
            raise ValueError(f"{running} is already running: wait for it to finish, or cancel it")

    @property
    def inBlindedRead(self) -> bool:
        """True while a manual-arm (blinded) read is open."""
        current = self.session.current if self.session is not None else None
        return current is not None and current.arm == MANUAL

    def startRun(self, params) -> RunJob:  # LumbarVNetProParameterNode or Settings
        """Start inference with the panel's settings; returns at once (poll with :meth:`poll`).

        ``ValueError`` lists what is wrong with the settings; the model folder is sha256-checked
        before the child starts (:meth:`CaseLogic.startInference`). Refused during a blinded
        (manual-arm) read: no AI output may appear while it is open.
        """
        if self.inBlindedRead:
            raise ValueError(
                "Run analysis is not available during a manual-arm read: the read is blinded to AI output"
            )
        problems = validate(params)
        if problems:
            raise ValueError("\n".join(problems))
        self._requireIdle()
        run = self.logic.startInference(params.inputVolume, params.outputFolder, params.device, model_dir_of(params))
        self.job = _Job(ANALYSIS, run.running, run=run)
        return run

    def startInstall(self, running, names: list[str], workDir: Path | None = None) -> None:  # RunningProcess of pip
        """Track a started pip install as the panel's job (progress: pip's lines; Cancel ends it).

        ``workDir``, pip's private folder (``install.start_install``), is removed when the job ends.
        """
        self._requireIdle()
        self.job = _Job(INSTALL, running, context={"names": list(names), "workDir": workDir})

    def poll(self, showPlanes: bool = False) -> PollResult:
        """Progress of the running job; when it has ended, take its result (or say why not).

        Analysis, DONE: the result is in the scene (:attr:`nodes`), filed under the volume the run
        was *started* on (replacing that volume's previous result only), and :attr:`rows` hold its
        grades, unreviewed. While a read is open a finished analysis is WITHHELD: its folder is
        kept and nothing is shown, so no AI row can reach a blinded read nor replace a read's rows.
        A cancelled or failed job loads nothing and removes nothing.
        """
        job = self.job
        if job is None:
            return PollResult(CANCELLED)
        stage, progress = self._progress(job)
        if job.running.poll() is None:
            return PollResult(RUNNING, stage, progress, kind=job.kind)
        if job.kind == INSTALL:
            self._drainInstall(job)
        self.job = None
        result = None
        try:
            if job.running.cancelled:
                result = PollResult(CANCELLED, stage, progress, kind=job.kind)
                return result
            try:
                if job.kind == ANALYSIS:
                    result = self._finishAnalysis(job, stage, progress, showPlanes)
                elif job.kind == CASE:
                    result = self._finishCase(job, stage, progress, showPlanes)
                elif job.kind == RECOMPUTE:
                    result = self._finishRecompute(job, stage, progress)
                else:
                    result = self._finishInstall(job, stage, progress)
            except (ProcessFailed, ValueError, OSError, RuntimeError, ReadingError) as err:
                result = PollResult(FAILED, stage, progress, str(err), kind=job.kind)
            return result
        finally:
            self._cleanUp(job, done=result is not None and result.state == DONE)

    def _cleanUp(self, job: _Job, done: bool = False) -> None:
        """Remove the temporary files of an ended job.

        Install: pip's private folder, whatever the outcome. Recompute: once DONE only the copy
        of the input volume goes (the ``recomputed`` result folder is loaded and stays); cancelled
        or failed, the whole work folder goes if this workplace made it (else only the input copy).
        """
        if job.kind == INSTALL:
            from .install import remove_workdir

            remove_workdir(job.context.get("workDir"))
        elif job.kind == RECOMPUTE and job.recompute is not None:
            workDir = Path(job.recompute.workDir)
            if not done and job.context.get("ownWorkDir"):
                shutil.rmtree(workDir, ignore_errors=True)
            else:
                Path(job.recompute.job.inputPath).unlink(missing_ok=True)

    def _progress(self, job: _Job) -> tuple[str | None, float | None]:
        stage, progress = None, None
        if job.kind == INSTALL:
            from .install import pip_stage

            for line in job.running.new_lines():
                job.context.setdefault("log", []).append(line)
                stage = pip_stage(line) or stage
            return stage, None
        for message in job.running.progress_messages():
            stage, progress = stage_label(message.stage), message.progress
        return stage, progress

    def _drainInstall(self, job: _Job) -> None:
        job.running.wait()
        job.context.setdefault("log", []).extend(job.running.new_lines())

    def _finishAnalysis(self, job: _Job, stage, progress, showPlanes: bool) -> PollResult:
        run = job.run
        report = self.logic.finishInference(run)
        volume = run.inputVolume
        if volume is None or volume.GetScene() is not self.logic.scene:
            raise ValueError(f"the input volume was removed from the scene; the result is kept in {run.outputDir}")
        if self.session is not None and self.session.current is not None:
            return PollResult(
                WITHHELD, stage, progress,
                f"the analysis finished while a case is being read; its result is kept in {run.outputDir} "
                "and not shown",
                kind=ANALYSIS,
            )  # fmt: skip
        # A re-run on the same volume replaces that volume's previous result (no second set of
        # nodes); results of other volumes stay.
        lvpscene.remove_volume_results(self.logic.scene, volume)
        self.nodes = self.logic.loadResult(run.outputDir, volume, "", showPlanes)
        self.rows = rows_from_report(report)
        self.numbering = numbering_note(report)
        self.caseKey, self.arm = "", ""
        self.resultVolume = volume
        return PollResult(DONE, stage, progress, kind=ANALYSIS)

    def _finishInstall(self, job: _Job, stage, progress) -> PollResult:
        from .process import readable_error

        # The warm worker imported the packages as they were: the next run starts one that sees
        # what pip changed (whatever pip's outcome: it may have changed some before failing).
        self.logic.shutdown()
        code = job.running.poll()
        if code != 0:
            log = "".join(job.context.get("log", []))
            raise RuntimeError(f"pip install failed: {readable_error(job.running.stderr or log, code)}")
        return PollResult(DONE, stage, progress, kind=INSTALL, lines=job.context.get("names", []))

    def cancel(self) -> None:
        """End the running child and everything it started (the next poll says CANCELLED)."""
        if self.job is not None:
            self.job.running.cancel()
            if self.job.run is not None:
                self.job.run.discardInput()

    def close(self) -> None:
        """The panel is going (module cleanup, application exit): cancel the job, end the warm worker."""
        self.cancel()
        self.logic.shutdown()

    def sceneClosing(self) -> None:
        """The scene is closing: the running job is cancelled (its nodes are going) and the case forgotten."""
        self.cancel()
        if self.job is not None:
            self.job.running.poll()
            job, self.job = self.job, None
            self._cleanUp(job)
        self.forgetCase()

    def forgetCase(self) -> None:
        """Drop the case nodes and rows (the scene is closing); the reading session stays."""
        self.nodes = None
        self.rows = []
        self.numbering = ""
        self.resultVolume = None

    # ------------------------------------------------------------- grade edits
    def setReaderGrade(self, rowIndex: int, grade: int | None) -> GradeRow | None:
        """The reader chose a grade in row ``rowIndex``: a draft in a read, and the grade table node.

        ``None`` (the combo box's empty entry) changes nothing. :class:`ReadingError` for a row
        the read does not have; ``ValueError`` for a grade off the row's scale.
        """
        if grade is None:
            return None
        row = self.rows[rowIndex]
        if int(grade) not in grade_values(row.pathology):
            raise ValueError(f"grade {grade} is not on the scale of {row.pathology} {grade_values(row.pathology)}")
        if self.session is not None and self.session.current is not None:
            row = self.session.set_grade(row.level, row.pathology, int(grade))
        else:
            row.reader_grade = int(grade)
        if self.nodes is not None and self.nodes.gradeTable is not None:
            lvpscene.write_grade_table(self.nodes.gradeTable, self.rows)
        return row

    def acceptRow(self, rowIndex: int) -> GradeRow:
        """The reader accepts the AI grade of row ``rowIndex`` (``ValueError`` without one)."""
        row = self.rows[rowIndex]
        if row.ai_grade is None:
            raise ValueError(f"{row.level}: the AI gave no grade to accept; choose one")
        return self.setReaderGrade(rowIndex, row.ai_grade)

    def keyGrade(self, rowIndex: int, key: str) -> GradeRow | None:
        """A grading key pressed on row ``rowIndex``: a digit sets that grade, ``a`` accepts the AI grade.

        A digit off the row's scale changes nothing (None), so a slip of the finger is harmless.
        """
        if not 0 <= rowIndex < len(self.rows):
            return None
        if key.lower() == "a":
            return self.acceptRow(rowIndex) if self.rows[rowIndex].ai_grade is not None else None
        if key.isdigit() and int(key) in grade_values(self.rows[rowIndex].pathology):
            return self.setReaderGrade(rowIndex, int(key))
        return None

    def levelCenter(self, rowIndex: int) -> list[float] | None:
        """The RAS centre of the disc of row ``rowIndex`` (from the level labels), or None.

        None in the manual arm: it has no level labels (the AI's positions are not shown there).
        """
        labels = self.nodes.levelLabels if self.nodes is not None else None
        if labels is None or not 0 <= rowIndex < len(self.rows):
            return None
        level = self.rows[rowIndex].level
        for i in range(labels.GetNumberOfControlPoints()):
            if labels.GetNthControlPointLabel(i) == level:
                point = [0.0, 0.0, 0.0]
                labels.GetNthControlPointPositionWorld(i, point)
                return point
        return None

    def startRecompute(self, inputVolume=None, workDir: Path | None = None) -> RecomputeJob:
        """Start a Recompute from the edited segmentation (poll for its lines).

        ``ReadingError`` without an AI result. The volume is the one the result belongs to.
        """
        if self.nodes is None or self.nodes.segmentation is None:
            raise ReadingError("load an AI result first")
        self._requireIdle()
        volume = inputVolume if inputVolume is not None else self.resultVolume
        if volume is None:
            raise ReadingError("the volume of this result is no longer in the scene")
        own = not workDir
        workDir = Path(workDir) if workDir else Path(tempfile.mkdtemp(prefix="lvp-recompute-"))
        try:
            recompute = self.logic.startRecompute(self.nodes, volume, workDir)
        except BaseException:
            if own:
                shutil.rmtree(workDir, ignore_errors=True)
            else:
                (workDir / INPUT_NAME).unlink(missing_ok=True)
            raise
        self.job = _Job(RECOMPUTE, recompute.job.running, recompute=recompute, context={"ownWorkDir": own})
        return recompute

    def _finishRecompute(self, job: _Job, stage, progress) -> PollResult:
        rows, changes, report = self.logic.finishRecompute(job.recompute, self.rows, self.caseKey)
        self.rows = rows
        self.numbering = numbering_note(report)
        if self.session is not None and self.session.current is not None:
            self.session.replace_rows(self.rows)
        return PollResult(DONE, stage, progress, kind=RECOMPUTE, lines=describe_changes(changes))

    def recompute(self, inputVolume=None, workDir: Path | None = None, progress=None) -> list[str]:
        """Blocking Recompute (scripts, tests); returns one line per grade that changed."""
        recompute = self.startRecompute(inputVolume, workDir)
        recompute.job.running.wait(progress=progress)
        result = self.poll()
        if result.state != DONE:
            raise ProcessFailed(result.error or result.state)
        return result.lines

    # ------------------------------------------------------------------ reading
    def signIn(self, readerId: str, databaseUrl: str, draftDir: Path | None = None, db=None) -> list[WorklistEntry]:
        """Open the reading database (``db``, else ``databaseUrl``) and sign in."""
        if db is None:
            from lvp.readingdb import ReadingDB

            db = ReadingDB(databaseUrl or None)
        self.session = ReadingSession(db, readerId, draftDir)
        return self.worklist()

    def worklist(self, washout: str = "(washout)") -> list[WorklistEntry]:
        """The signed-in reader's worklist lines (empty before sign-in)."""
        if self.session is None:
            return []
        return [
            WorklistEntry(worklist_text(i, washout), i.assignment_id, i.available, i.status)
            for i in self.session.worklist()
        ]

    def pickAssignment(self, assignmentId: int | None = None):  # WorkItem or None
        """The selected assignment if it can be read now, else the next available one (None: done).

        An assignment still in its washout period cannot be opened (``ReadingError``).
        """
        session = self._requireSession()
        if assignmentId is not None:
            item = next((i for i in session.worklist() if i.assignment_id == assignmentId), None)
            if item is not None:
                if not item.available:
                    raise ReadingError(f"case {item.case_key} is still in its washout period")
                return item
        return session.next_assignment()

    def adjacentAssignment(self, step: int):  # WorkItem or None
        """The next (``step=1``) or previous (``-1``) readable, unsubmitted assignment from the current one."""
        session = self._requireSession()
        items = [i for i in session.worklist() if i.available and i.status != "submitted"]
        current = session.current.assignment_id if session.current is not None else None
        ids = [i.assignment_id for i in items]
        if current not in ids:
            return items[0] if items and step > 0 else None
        index = ids.index(current) + step
        return items[index] if 0 <= index < len(items) else None

    def loadAssignment(
        self,
        item,  # WorkItem
        loadVolume: Callable[[str], object],
        device: str = "auto",
        showPlanes: bool = False,
        loadDicom: Callable[[str], object] | None = None,
    ):  # the loaded volume node
        """Load a case in its arm: the previous case's nodes go (image included), the read starts.

        ``loadVolume(path)`` puts an image file into the scene (``slicer.util.loadVolume``),
        ``loadDicom(folder)`` a DICOM series folder (Slicer's DICOM import). The AI-assisted arm
        uses the case's ``<image>.lvp`` result; when it is absent an analysis is started as the
        panel's job (:attr:`running`, kind CASE) and the case opens when :meth:`poll` sees it done.
        The manual arm reads no AI output at all.
        """
        session = self._requireSession()
        self._requireIdle()
        if session.current is not None:
            # Every grade is saved as it is set; this is the last word of the read on screen,
            # which is closed: nothing may be submitted for a case no longer shown.
            session.save_draft()
            session.current = None
        self.closeCase()
        volume = load_case_image(item.image_ref, loadVolume, loadDicom)
        lvpscene.mark_case_image(volume, item.case_key)
        self.caseKey, self.arm = item.case_key, item.arm
        if item.arm != MANUAL:
            resultDir = result_dir_for(item.image_ref)
            if not (resultDir / "report.json").is_file():
                run = self.logic.startInference(volume, resultDir, device)
                self.job = _Job(CASE, run.running, run=run, context={"item": item, "volume": volume})
                return volume
        self._openCase(item, volume, showPlanes)
        return volume

    def _finishCase(self, job: _Job, stage, progress, showPlanes: bool) -> PollResult:
        self.logic.finishInference(job.run)
        self._openCase(job.context["item"], job.context["volume"], showPlanes)
        return PollResult(DONE, stage, progress, kind=CASE)

    def _openCase(self, item, volume, showPlanes: bool) -> None:
        session = self._requireSession()
        report, resultDir = None, None
        if item.arm != MANUAL:
            resultDir = result_dir_for(item.image_ref)
            report = lvpscene.load_report(resultDir)
        current = session.start(item.assignment_id, report)
        self.rows = current.rows
        self.numbering = numbering_note(report) if report else ""
        self.nodes = self.logic.loadCase(item.arm, volume, self.rows, resultDir, item.case_key, showPlanes)
        self.resultVolume = volume if item.arm != MANUAL else None

    def closeCase(self) -> None:
        """Remove the case on screen from the scene (its image, grade table and AI nodes)."""
        if self.caseKey:
            lvpscene.remove_case_nodes(self.logic.scene, self.caseKey)
            self.forgetCase()
        self.caseKey, self.arm = "", ""

    @property
    def canRecompute(self) -> bool:
        """Recompute needs a segmentation: an analysis result or an AI-assisted read."""
        return self.nodes is not None and self.nodes.segmentation is not None

    def readingTime(self) -> str | None:
        """``MM:SS`` of the read on screen, or None when no case is being read."""
        current = self.session.current if self.session is not None else None
        return None if current is None else elapsed_text(current.elapsed_s())

    def submitQuestion(self) -> str:
        """The confirmation the panel asks before a submit (a submitted read cannot be changed)."""
        current = self._requireSession().current
        if current is None:
            raise ReadingError("no case is being read")
        return (
            f"Submit your read of case {current.case_key}? A submitted read is final: it cannot be "
            "opened or changed again."
        )

    def submit(self):  # the next WorkItem or None
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
