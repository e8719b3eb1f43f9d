"""The module's logic without Qt: run inference, load a case per arm, recompute after edits.

``LumbarVNetProLogic`` in ``LumbarVNetPro.py`` holds one of these (composition: Slicer's
``ScriptedLoadableModuleLogic.__init__`` takes no scene, so the two are not mixed into one
class); tests and scripts use this one directly with their own scene.

Every child process is started here and returns at once (:meth:`CaseLogic.startInference`,
:meth:`CaseLogic.startRecompute`): the panel polls it from a Qt timer, so Slicer never freezes;
the blocking forms (:meth:`CaseLogic.process`, :meth:`CaseLogic.recompute`) are for scripts.
"""

# ruff: noqa: N815 - node fields use Slicer's camelCase, as the parameter node and .ui do
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import scene as lvpscene
from .grades import GradeChange, GradeRow, apply_recompute
from .models import verify_model_folder
from .parameters import model_dir_of, validate
from .process import ProcessFailed, ProcessRunner, ProgressCallback, RunningProcess, infer_command
from .reading import MANUAL
from .worker import WorkerRunner

# The private folder holding the copy of the input volume that a child run reads.
INPUT_PREFIX = "lvp-input-"
# Its file is written uncompressed: gzip of a float volume was most of a Run's own time (the 20 MB
# sample: 1.3 s as .nii.gz, 0.03 s as .nii, on 2 busy cores), and the file is removed when the run ends.
INPUT_NAME = "input.nii"


@dataclass
class RunJob:
    """An inference started with :meth:`CaseLogic.startInference` (the widget polls it)."""

    running: RunningProcess
    outputDir: Path
    inputPath: Path
    # The volume node the run was started on: its result is filed under it, whatever the
    # selector shows when the child ends.
    inputVolume: object = None
    # The DICOM series the volume came from (kept in the result's report.json), or "".
    seriesUid: str = ""
    startedAt: float = 0.0  # time.time() at start: an older report.json is not this run's

    def discardInput(self) -> None:
        """Remove the private copy of the input written for the child (a whole volume per run)."""
        folder = Path(self.inputPath).parent
        if folder.name.startswith(INPUT_PREFIX):
            shutil.rmtree(folder, ignore_errors=True)


@dataclass
class RecomputeJob:
    """A Recompute started with :meth:`CaseLogic.startRecompute`."""

    job: RunJob
    nodes: lvpscene.CaseNodes
    values: dict
    renames: dict
    workDir: Path


class CaseLogic:
    """Runs the core in a child process and puts its results into ``scene``."""

    def __init__(self, scene, runner: ProcessRunner | WorkerRunner | None = None, python: str | None = None) -> None:
        """``scene`` holds the case nodes; ``runner`` starts child processes (default
        :class:`~.worker.WorkerRunner`: ``lvp infer`` runs as a job of a warm ``lvp serve`` child
        reused between cases, anything else as its own child; :class:`ProcessRunner`: one child per
        case); ``python`` runs the core (default PythonSlicer / this Python).
        """
        self.scene = scene
        self.runner = runner or WorkerRunner()
        self.python = python

    def shutdown(self) -> None:
        """End the runner's warm worker, if it has one (module cleanup, application exit).

        Its stdin is closed, it gets a moment to exit, then its process group is killed.
        """
        shutdown = getattr(self.runner, "shutdown", None)
        if shutdown is not None:
            shutdown()

    # ------------------------------------------------------------------ inference
    @staticmethod
    def childEnv() -> dict:
        """Environment of core children: the folder holding ``lvp`` first on PYTHONPATH.

        PythonSlicer does not put the module folders on ``sys.path`` as the application does,
        so ``python -m lvp`` would not find the core shipped beside this module otherwise.
        """
        core_parent = str(Path(__file__).resolve().parents[1])
        paths = [core_parent] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        return {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}

    def startInference(
        self,
        inputVolume,
        outputDir: Path | None = None,
        device: str = "auto",
        modelDir: Path | None = None,
    ) -> RunJob:
        """Check the model, write the input for the child and start ``lvp infer``; returns at once.

        The model folder (``modelDir``, else ``$LVP_MODEL_DIR``, else the bundled one) is verified
        by sha256 here (:class:`lvp.errors.ModelError` names a tampered file) and passed to the
        child explicitly with ``--model``.
        """
        if inputVolume is None:
            raise ValueError("select an input volume first")
        modelDir = verify_model_folder(modelDir).folder
        outputDir = (
            Path(outputDir) if outputDir and str(outputDir) not in ("", ".") else Path(tempfile.mkdtemp(prefix="lvp-"))
        )
        outputDir.parent.mkdir(parents=True, exist_ok=True)
        # The input goes to a private folder of its own: the output folder is the core's, which
        # replaces it as a whole with one run's result.
        inputPath = lvpscene.write_volume(inputVolume, Path(tempfile.mkdtemp(prefix=INPUT_PREFIX)) / INPUT_NAME)
        args = infer_command(inputPath, outputDir, device, modelDir, python=self.python)
        started = time.time()
        running = self.runner.start(args, env=self.childEnv())
        return RunJob(running, outputDir, inputPath, inputVolume, lvpscene.series_uid_of(inputVolume), started)

    def finishInference(self, job: RunJob) -> dict:
        """The report of a finished job; :class:`ProcessFailed` with the readable error otherwise.

        A partial report (a stage failed) is refused too: partial results are never shown as
        complete, so they are not loaded as if they were.
        """
        try:
            return self._finishedReport(job)
        finally:
            job.discardInput()

    def _finishedReport(self, job: RunJob) -> dict:
        code = job.running.poll()
        report_path = job.outputDir / "report.json"
        # A report left by an earlier run in the same folder must not pass for this run's result.
        fresh = report_path.is_file() and report_path.stat().st_mtime >= job.startedAt - 2.0
        if not fresh:
            raise ProcessFailed(job.running.error_message())
        report = lvpscene.load_report(job.outputDir)
        if report.get("status") != "complete":
            stage = report.get("failed_stage", "a stage")
            raise ProcessFailed(f"the analysis is incomplete ({stage} failed: {report.get('error', 'unknown error')})")
        if code not in (0, None):
            raise ProcessFailed(job.running.error_message())
        if job.seriesUid and not (report.get("input") or {}).get("series_uid"):
            # The child read a NIfTI written from the volume; the DICOM series it came from is
            # known here only, and the result must say which series it is about.
            report.setdefault("input", {})["series_uid"] = job.seriesUid
            lvpscene.save_report(job.outputDir, report)
        return report

    def process(
        self,
        inputVolume,  # vtkMRMLScalarVolumeNode
        outputDir: Path | None = None,
        device: str = "auto",
        modelDir: Path | None = None,
        caseKey: str = "",
        showPlanes: bool = False,
        progress: ProgressCallback | None = None,
    ) -> lvpscene.CaseNodes:
        """Run inference on ``inputVolume`` (blocking) and load the result (AI-assisted display)."""
        job = self.startInference(inputVolume, outputDir, device, modelDir)
        job.running.wait(progress=progress)
        self.finishInference(job)
        return self.loadResult(job.outputDir, inputVolume, caseKey, showPlanes)

    def runFromParameters(self, params, progress: ProgressCallback | None = None) -> lvpscene.CaseNodes:
        """:meth:`process` with the settings of a parameter node (``ValueError`` lists the problems)."""
        problems = validate(params)
        if problems:
            raise ValueError(" ".join(problems))
        return self.process(
            params.inputVolume,
            outputDir=params.outputFolder,
            device=params.device,
            modelDir=model_dir_of(params),
            showPlanes=params.showScanPlanes,
            progress=progress,
        )

    def loadResult(
        self, outputDir: Path, inputVolume, caseKey: str = "", showPlanes: bool = False
    ) -> lvpscene.CaseNodes:
        """Import an ``lvp infer`` output folder into the scene."""
        return lvpscene.import_result(self.scene, outputDir, inputVolume, caseKey, showPlanes)

    # --------------------------------------------------------------- reading arms
    def loadCase(
        self,
        arm: str,
        inputVolume,
        rows: list[GradeRow],
        resultDir: Path | None = None,
        caseKey: str = "",
        showPlanes: bool = False,
    ) -> lvpscene.CaseNodes:
        """Put a case's reading nodes into the scene according to its arm.

        Manual arm: only the reader's grade table; no segmentation, labels, planes or AI grade
        is loaded or computed (``resultDir`` is not even read). AI-assisted arm: the result
        folder and the grade table of ``rows``.
        """
        if arm == MANUAL:
            return lvpscene.CaseNodes(gradeTable=lvpscene.create_manual_table(self.scene, inputVolume, rows, caseKey))
        if resultDir is None:
            raise ValueError("the AI-assisted arm needs the case's lvp infer result")
        nodes = self.loadResult(resultDir, inputVolume, caseKey, showPlanes)
        lvpscene.write_grade_table(nodes.gradeTable, rows)
        return nodes

    # ------------------------------------------------------------------ recompute
    def exportForCore(self, segmentation, referenceVolume, folder: Path) -> Path:
        """Write the edited segmentation as a TotalSpineSeg label map for ``lvp infer --labels``.

        Values follow the segment names (a renamed level moves to its new value), else the value
        tags; see :func:`scene.segment_label_values`.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        labels_path = folder / "edited_labels.nii.gz"
        lvpscene.export_labelmap(self.scene, segmentation, referenceVolume, labels_path)
        return labels_path

    def recomputeCommand(self, imagePath: Path, labelsPath: Path, outputDir: Path, previous: Path | None) -> list[str]:
        """``lvp infer IMAGE --labels LABELS [--previous DIR]``: no network, levels kept as named."""
        args = infer_command(imagePath, outputDir, "cpu", None, python=self.python)
        args += ["--labels", str(labelsPath), "--no-html"]
        if previous is not None and (Path(previous) / "report.json").is_file():
            args += ["--previous", str(previous)]
        return args

    def recompute(
        self,
        nodes: lvpscene.CaseNodes,
        inputVolume,
        rows: list[GradeRow],
        workDir: Path,
        progress: ProgressCallback | None = None,
        caseKey: str = "",
    ) -> tuple[list[GradeRow], list[GradeChange], dict]:
        """Re-measure, re-grade and re-plan from the edited segmentation; returns rows, changes, report.

        The segmentation is exported with its level names as the reader left them and handed to
        ``lvp infer --labels`` in a child process: no network and no level labelling, so a renamed
        or re-assigned level stays as the reader named it. Untouched levels keep the earlier
        result's confidence, edited ones get 1.0. The reader's own grade changes are kept, also
        across a renamed level (:func:`scene.level_renames`, written to ``level_renames.json``);
        the grade table, level labels, scan planes and segment tags/terminology are updated.
        """
        job = self.startRecompute(nodes, inputVolume, workDir)
        job.job.running.wait(progress=progress)
        return self.finishRecompute(job, rows, caseKey)

    def startRecompute(self, nodes: lvpscene.CaseNodes, inputVolume, workDir: Path) -> RecomputeJob:
        """Export the edited segmentation and start ``lvp infer --labels``; returns at once."""
        workDir = Path(workDir)
        workDir.mkdir(parents=True, exist_ok=True)
        values = lvpscene.segment_label_values(nodes.segmentation)  # refuses ambiguous segments early
        # Renamed levels, from the segments' value tags before they are updated: their rows (and
        # the reader's grades) carry over to the new level name.
        renames = lvpscene.level_renames(nodes.segmentation, values)
        (workDir / "level_renames.json").write_text(json.dumps(renames, indent=1))
        labels_path = self.exportForCore(nodes.segmentation, inputVolume, workDir)
        image_path = lvpscene.write_volume(inputVolume, workDir / INPUT_NAME)  # uncompressed, as Run's
        out = workDir / "recomputed"
        args = self.recomputeCommand(image_path, labels_path, out, nodes.resultDir)
        started = time.time()
        running = self.runner.start(args, env=self.childEnv())
        job = RunJob(running, out, image_path, inputVolume, lvpscene.series_uid_of(inputVolume), started)
        return RecomputeJob(job, nodes, values, renames, workDir)

    def finishRecompute(
        self, recompute: RecomputeJob, rows: list[GradeRow], caseKey: str = ""
    ) -> tuple[list[GradeRow], list[GradeChange], dict]:
        """Take a finished Recompute into the scene: rows, changes and the new report."""
        nodes = recompute.nodes
        report = self.finishInference(recompute.job)
        new_rows, changes = apply_recompute(rows, report, recompute.renames)
        if nodes.gradeTable is not None:
            lvpscene.write_grade_table(nodes.gradeTable, new_rows)
        lvpscene.update_from_report(self.scene, nodes, report, caseKey)
        lvpscene.retag_segments(nodes.segmentation, recompute.values)
        nodes.resultDir = recompute.job.outputDir
        changes_path = recompute.workDir / "recompute_changes.json"
        changes_path.write_text(json.dumps([c.__dict__ for c in changes], indent=1))
        return new_rows, changes, report
