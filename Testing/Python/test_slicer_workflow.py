"""The panel's workflow without Qt (``LumbarVNetProLib.workflow``) on a real MRML scene (slicer-core).

The child process is replaced by a fake runner that writes a given ``report.json`` (and copies
the result's files), so these tests check the panel's decisions and state, fast; the real
``lvp infer`` child runs in test_slicer_logic.py and test_slicer_flow.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import vtk
from slicer_helpers import SAMPLE_DIR, slicer

from lvp.readingdb import AIGrade, ReadingDB, admin

pytest_plugins = ("slicer_helpers",)  # the reference_result and scene_with_sample fixtures


class FakeRunning:
    """A finished (or still running) child: what ``RunningProcess`` offers the logic."""

    def __init__(self, code: int | None = 0, messages: list | None = None) -> None:
        self.code, self.cancelled, self.messages = code, False, list(messages or [])

    def poll(self):
        return self.code

    def wait(self, timeout_s=None, progress=None):
        return self.code

    def progress_messages(self):
        messages, self.messages = self.messages, []
        return messages

    def error_message(self):
        return "cancelled" if self.cancelled else "boom: the child failed"

    def cancel(self, grace_s: float = 3.0):
        self.cancelled, self.code = True, -15


class FakeRunner:
    """Starts nothing: copies ``source`` into the ``-o`` folder, with ``edit(report)`` applied."""

    def __init__(self, source: Path, edit=None, running: FakeRunning | None = None) -> None:
        self.source, self.edit, self.running, self.calls = Path(source), edit, running, []

    def start(self, args, env=None, cwd=None):
        self.calls.append(list(args))
        out = Path(args[args.index("-o") + 1])
        out.mkdir(parents=True, exist_ok=True)
        for path in self.source.iterdir():
            if path.is_file() and path.name not in ("input.nii", "input.nii.gz"):
                shutil.copy(path, out / path.name)
        report = json.loads((self.source / "report.json").read_text())
        if self.edit is not None:
            report = self.edit(report)
        (out / "report.json").write_text(json.dumps(report))
        return self.running or FakeRunning()


def _params(volume, **changes):
    from LumbarVNetProLib.parameters import Settings

    params = Settings(inputVolume=volume)
    for name, value in changes.items():
        setattr(params, name, value)
    return params


def _workplace(scene, runner):
    from LumbarVNetProLib.logic import CaseLogic
    from LumbarVNetProLib.workflow import Workplace

    return Workplace(CaseLogic(scene, runner=runner))


# ----------------------------------------------------------------------------- run


def test_run_polls_progress_then_loads_result_and_its_rows(scene_with_sample, reference_result, tmp_path):
    from LumbarVNetProLib.process import Progress
    from LumbarVNetProLib.workflow import DONE, RUNNING

    scene, volume, _ = scene_with_sample
    running = FakeRunning(code=None, messages=[Progress("read", 0.1), Progress("segment", 0.4)])
    runner = FakeRunner(reference_result, running=running)
    place = _workplace(scene, runner)
    place.startRun(_params(volume, outputFolder=tmp_path / "out"))
    assert "--model" in runner.calls[0]  # the bundled folder, always passed explicitly
    with pytest.raises(ValueError, match="already running"):
        place.startRun(_params(volume))
    first = place.poll()
    assert (first.state, first.stage, first.progress) == (RUNNING, "Segment", 0.4)  # readable names
    running.code = 0
    done = place.poll(showPlanes=True)
    assert done.state == DONE and not place.running
    assert place.nodes.segmentation is not None and place.canRecompute
    assert place.nodes.scanPlanes and place.nodes.scanPlanes[0].GetDisplayNode().GetVisibility()
    # The panel's grade table gets the result's rows, unreviewed: accepted only by the reader.
    assert ("L4-L5", "herniation") in {r.key for r in place.rows}
    assert all(r.reader_grade is None and r.state == "unreviewed" for r in place.rows)


def test_second_run_on_the_same_volume_replaces_its_result(scene_with_sample, reference_result, tmp_path):
    """Run analysis twice on one volume: one set of result nodes, the second run's."""
    from LumbarVNetProLib import scene as lvpscene
    from LumbarVNetProLib.workflow import DONE

    scene, volume, _ = scene_with_sample
    place = _workplace(scene, FakeRunner(reference_result))

    def result_nodes():
        found = []
        for i in range(scene.GetNumberOfNodes()):
            node = scene.GetNthNode(i)
            if node.GetAttribute(lvpscene.ROLE_ATTRIBUTE):
                found.append((node.GetAttribute(lvpscene.ROLE_ATTRIBUTE), node.GetID()))
        return found

    def folders():
        sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
        ids = vtk.vtkIdList()
        sh.GetItemChildren(sh.GetSceneItemID(), ids, True)
        return [sh.GetItemName(ids.GetId(i)) for i in range(ids.GetNumberOfIds())
                if sh.GetItemName(ids.GetId(i)).endswith("LVP scan planes")]

    place.startRun(_params(volume, outputFolder=tmp_path / "one"))
    assert place.poll().state == DONE
    first = result_nodes()
    roles = sorted(role for role, _ in first)
    assert roles.count("segmentation") == 1 and roles.count("grades") == 1 and roles.count("levels") == 1
    first_seg = place.nodes.segmentation.GetID()
    place.startRun(_params(volume, outputFolder=tmp_path / "two"))
    assert place.poll().state == DONE
    second = result_nodes()
    assert sorted(role for role, _ in second) == roles  # same set of roles, once each
    assert not {node_id for _, node_id in first} & {node_id for _, node_id in second}  # all replaced
    assert scene.GetNodeByID(first_seg) is None and place.nodes.segmentation.GetID() != first_seg
    assert len(folders()) == 1
    # A reading case's nodes (another case key) are not an analysis result: they stay.
    kept = scene.AddNewNodeByClass("vtkMRMLTableNode", "read grades")
    kept.SetAttribute(lvpscene.CASE_ATTRIBUTE, "case-001")
    kept.SetAttribute(lvpscene.ROLE_ATTRIBUTE, "grades")
    kept.SetAttribute(lvpscene.VOLUME_ATTRIBUTE, volume.GetID())
    assert lvpscene.remove_volume_results(scene, volume) == len(second)
    assert result_nodes() == [("grades", kept.GetID())]


def test_run_refuses_bad_settings_and_reports_failure_and_cancel(scene_with_sample, reference_result, tmp_path):
    from LumbarVNetProLib.workflow import CANCELLED, FAILED

    scene, volume, _ = scene_with_sample
    place = _workplace(scene, FakeRunner(reference_result))
    with pytest.raises(ValueError, match="offline model folder"):
        place.startRun(_params(volume, modelSource="folder"))
    with pytest.raises(ValueError, match="input volume"):
        place.startRun(_params(None))

    def incomplete(report):
        return {**report, "status": "partial", "failed_stage": "grade", "error": "no canal"}

    place = _workplace(scene, FakeRunner(reference_result, edit=incomplete, running=FakeRunning(code=1)))
    place.startRun(_params(volume, outputFolder=tmp_path / "bad"))
    failed = place.poll()
    assert failed.state == FAILED and "grade failed: no canal" in failed.error
    assert place.nodes is None and place.rows == []

    place = _workplace(scene, FakeRunner(reference_result, running=FakeRunning(code=None)))
    place.startRun(_params(volume, outputFolder=tmp_path / "cancel"))
    place.cancel()
    assert place.poll().state == CANCELLED and place.nodes is None


def test_model_folder_choice(tmp_path):
    from LumbarVNetProLib.parameters import model_dir_of

    assert model_dir_of(_params(None)) is None
    assert model_dir_of(_params(None, modelSource="folder", modelFolder=tmp_path)) == tmp_path
    # A folder left in the settings is not used while the source is the catalogue.
    assert model_dir_of(_params(None, modelSource="catalog", modelFolder=tmp_path)) is None


# --------------------------------------------------------------- grades, recompute


def test_grade_table_cells_and_choices():
    from LumbarVNetProLib.grades import GradeRow, grade_choices, table_cells

    row = GradeRow("L4-L5", "herniation", 2, 0.8123, "posterior_displacement_mm", 4.06, 2)
    assert table_cells(row) == ["L4-L5", "Disc herniation", "protrusion", "0.81", "posterior displacement 4.1 mm"]
    assert table_cells(GradeRow("L4-L5", "pfirrmann")) == ["L4-L5", "Pfirrmann disc degeneration", "", "", ""]
    recess = GradeRow("L5-S", "lateral_recess_left", 1, 0.7, "recess_depth_mm", 3.0, calibrated=False)
    assert table_cells(recess)[1:4] == ["Lateral recess stenosis, left", "mild", "0.70 (heuristic)"]
    # No internal key reaches the reader: no underscore in any cell.
    assert not any("_" in cell for cell in table_cells(row) + table_cells(recess))
    assert grade_choices("pfirrmann")[0] == ("1 I", 1) and len(grade_choices("canal_stenosis")) == 4


def test_the_slicer_table_and_the_html_report_word_a_measurement_alike():
    # One wording (lvp.scales.measurement_words) for the panel's table and the report's grade cell.
    from LumbarVNetProLib.grades import GradeRow, table_cells
    from lvp.report.html import _grade_view

    cases = [("posterior_displacement_mm", 4.06, "posterior displacement 4.1 mm"),
             ("dural_sac_area_mm2", 87.25, "dural sac area 87.2 mm²"),
             ("disc_signal_ratio", 0.456, "disc signal ratio 0.46"),
             ("dural_sac_ap_diameter_mm", 9.0, "dural sac AP diameter 9.0 mm"),
             ("obliquity_deg", 12.34, "obliquity 12.3 °")]
    for key, value, words in cases:
        grade = {"grade": 1, "name": "mild", "measurement": key, "value": value, "confidence": 0.5}
        row = GradeRow("L4-L5", "canal_stenosis", 1, 0.5, key, value, 1)
        assert table_cells(row)[4] == _grade_view(grade)["measurement"] == words, key
    assert table_cells(GradeRow("L4-L5", "pfirrmann", None, None, "disc_signal_ratio", None))[4] == "disc signal ratio"


def test_reader_grade_without_a_read_updates_rows_and_table_node(scene_with_sample, reference_result):
    from LumbarVNetProLib import scene as lvpscene

    scene, volume, _ = scene_with_sample
    place = _workplace(scene, FakeRunner(reference_result))
    place.startRun(_params(volume))
    place.poll()
    index = next(i for i, r in enumerate(place.rows) if r.key == ("L4-L5", "herniation"))
    assert place.setReaderGrade(index, None) is None  # the empty combo entry changes nothing
    row = place.setReaderGrade(index, 3)
    assert row.decision == "modified"
    table = {(r["level"], r["pathology"]): r for r in lvpscene.read_grade_table(place.nodes.gradeTable)}
    assert table[("L4-L5", "herniation")]["reader_grade"] == "3"
    assert table[("L4-L5", "herniation")]["decision"] == "modified"


def test_recompute_carries_the_reader_grade_over_a_renamed_level(scene_with_sample, reference_result, tmp_path):
    """Rename L5-S to L5-L6 after modifying its grade: the new L5-L6 row keeps the reader's grade."""
    from LumbarVNetProLib import scene as lvpscene

    scene, volume, _ = scene_with_sample
    place = _workplace(scene, FakeRunner(reference_result))
    place.startRun(_params(volume))
    place.poll()
    index = next(i for i, r in enumerate(place.rows) if r.key == ("L5-S", "herniation"))
    place.setReaderGrade(index, 2)  # AI said 0, the reader says protrusion
    seg = place.nodes.segmentation.GetSegmentation()
    seg.GetSegment(lvpscene.segment_id_for_value(place.nodes.segmentation, 100)).SetName("L5-L6 disc")

    def renamed(report):  # what lvp infer --labels reports for the renamed disc (AI now says bulge)
        for level in report["levels"]:
            if level["level"] == "L5-S":
                level["level"], level["disc_label"] = "L5-L6", 96
                level["grades"]["herniation"]["grade"] = 1
        report["model"] = {"name": "label-map"}
        return report

    place.logic.runner = FakeRunner(reference_result, edit=renamed)
    lines = place.recompute(volume, tmp_path / "recompute")
    rows = {r.key: r for r in place.rows}
    assert "L5-S" not in {r.level for r in place.rows}
    assert rows[("L5-L6", "herniation")].reader_grade == 2 and rows[("L5-L6", "herniation")].ai_grade == 1
    assert rows[("L5-L6", "pfirrmann")].reader_grade is None  # unreviewed stays unreviewed
    assert "L5-L6 Disc herniation: none → bulge (level renamed from L5-S) (your grade kept)" in lines
    assert json.loads((tmp_path / "recompute" / "level_renames.json").read_text()) == {"L5-S": "L5-L6"}
    table = {(r["level"], r["pathology"]): r for r in lvpscene.read_grade_table(place.nodes.gradeTable)}
    assert table[("L5-L6", "herniation")]["reader_grade"] == "2"
    # The segment now carries the new value: a second Recompute sees no rename.
    segmentation = place.nodes.segmentation
    assert lvpscene.level_renames(segmentation, lvpscene.segment_label_values(segmentation)) == {}


def test_recompute_needs_a_segmentation(scene_with_sample, reference_result):
    from LumbarVNetProLib.reading import ReadingError

    scene, volume, _ = scene_with_sample
    with pytest.raises(ReadingError, match="AI result"):
        _workplace(scene, FakeRunner(reference_result)).recompute(volume)


# ------------------------------------------------------------------ reading


@pytest.fixture()
def study(tmp_path, reference_result):
    """A reading database: c1 manual, c2 AI-assisted; c2's image has its ``<image>.lvp`` result."""
    image = tmp_path / "cases" / "c2.nii.gz"
    image.parent.mkdir()
    shutil.copy(SAMPLE_DIR / "spider_sample_t2.nii.gz", image)
    shutil.copytree(reference_result, tmp_path / "cases" / "c2.nii.gz.lvp")
    db = ReadingDB(f"sqlite:///{tmp_path / 'reading.sqlite'}")
    admin.create_study(db, "s", washout_days=0)
    cases = [{"case_key": "c1", "image_ref": str(SAMPLE_DIR / "spider_sample_t2.nii.gz")}]
    admin.add_cases(db, "s", cases + [{"case_key": "c2", "image_ref": str(image)}])
    admin.add_readers(db, "s", [{"username": "r1"}])
    admin.add_assignment(db, "s", "r1", "c1", "manual", 1, 0)
    admin.add_assignment(db, "s", "r1", "c2", "ai_assisted", 1, 1)
    db.store_ai_results("s", "c2", [AIGrade("L4-L5", "herniation", 2, 0.8, 4.1)])
    yield db
    db.close()


def test_reading_flow_through_the_workplace(study, tmp_path):
    from LumbarVNetProLib import scene as lvpscene
    from LumbarVNetProLib.reading import ReadingError
    from LumbarVNetProLib.workflow import elapsed_text, result_dir_for

    scene = slicer.vtkMRMLScene()

    def load_volume(path):
        return lvpscene.volume_node_from_file(scene, Path(path), Path(path).name)

    class NoRunner:
        def start(self, *args, **kwargs):
            raise AssertionError("the precomputed <image>.lvp result must be used")

    place = _workplace(scene, NoRunner())
    with pytest.raises(ReadingError, match="sign in"):
        place.pickAssignment()
    entries = place.signIn("r1", "", tmp_path / "drafts", db=study)
    assert [e.text for e in entries] == ["c1 — manual — not started", "c2 — AI-assisted — not started"]
    assert place.readingTime() is None
    with pytest.raises(ReadingError, match="no case"):
        place.submit()

    # The selected assignment wins over the next one.
    item = place.pickAssignment(entries[1].assignmentId)
    assert item.case_key == "c2"
    item = place.pickAssignment(None)
    assert item.case_key == "c1" and item.arm == "manual"
    place.loadAssignment(item, load_volume)
    assert place.nodes.segmentation is None and not place.canRecompute  # blinding: no AI node
    assert all(r.ai_grade is None for r in place.rows)
    assert place.readingTime() in (elapsed_text(0.0), elapsed_text(1.0))
    for i, row in enumerate(place.rows):
        place.setReaderGrade(i, 4 if row.pathology == "pfirrmann" else 0)
    nxt = place.submit()
    assert nxt.case_key == "c2"

    place.loadAssignment(nxt, load_volume)
    assert result_dir_for(nxt.image_ref) == Path(nxt.image_ref).parent / "c2.nii.gz.lvp"
    assert scene.GetNodesByClass("vtkMRMLTableNode").GetNumberOfItems() == 1  # the manual case's table went
    assert place.nodes.segmentation is not None and place.canRecompute
    assert {r.key: r.ai_grade for r in place.rows} == {("L4-L5", "herniation"): 2}
    place.setReaderGrade(0, 3)
    assert place.session.current.rows[0].reader_grade == 3
    assert place.submit() is None
    decisions = {r["ai_decision"] for r in admin.export_reads(study, "s") if r["arm"] == "ai_assisted"}
    assert decisions == {"modified"}


def test_worklist_text_and_elapsed():
    from types import SimpleNamespace

    from LumbarVNetProLib.workflow import elapsed_text, worklist_text

    item = SimpleNamespace(case_key="c9", arm="ai_assisted", status="draft", available=False)
    assert worklist_text(item, "(attente)") == "c9 — AI-assisted — draft (attente)"
    assert elapsed_text(125.4) == "02:05" and elapsed_text(-1) == "00:00"


def test_install_names_the_missing_packages_only(monkeypatch):
    from LumbarVNetProLib import install

    monkeypatch.setattr(install, "installed_version", lambda name: None if name in ("torch", "numpy") else "1")
    assert install.missing_names(("torch>=2", "numpy>=1", "scipy")) == ["torch"]  # numpy is Slicer's


# ------------------------------------------------------------------ temporary files


def _recompute_ready(scene, volume, reference_result, running=None):
    place = _workplace(scene, FakeRunner(reference_result))
    place.startRun(_params(volume))
    place.poll()
    place.logic.runner = FakeRunner(reference_result, running=running)
    return place


def test_recompute_leaves_no_input_copy_nor_work_folder(scene_with_sample, reference_result, tmp_path, monkeypatch):
    """DONE keeps only the loaded result; cancelled or failed, the whole work folder goes."""
    import tempfile

    from LumbarVNetProLib.workflow import CANCELLED, FAILED

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    scene, volume, _ = scene_with_sample

    place = _recompute_ready(scene, volume, reference_result)
    place.recompute(volume)
    (work,) = temp.glob("lvp-recompute-*")
    assert not (work / "input.nii").exists() and (work / "recomputed" / "report.json").is_file()
    shutil.rmtree(work)

    place.recompute(volume, tmp_path / "mine")  # a caller's folder: kept, without the input copy
    assert not (tmp_path / "mine" / "input.nii").exists() and (tmp_path / "mine" / "recomputed").is_dir()

    place = _recompute_ready(scene, volume, reference_result, running=FakeRunning(code=None))
    place.startRecompute(volume)
    # The input copy is uncompressed, as Run's (gzip of the float volume cost 0.5-1.3 s per Recompute).
    assert [p.name for p in temp.glob("lvp-recompute-*/input.nii*")] == ["input.nii"]
    place.cancel()
    assert place.poll().state == CANCELLED
    assert not list(temp.glob("lvp-recompute-*"))

    place = _recompute_ready(scene, volume, reference_result, running=FakeRunning(code=1))
    place.logic.runner.edit = lambda report: {**report, "status": "failed", "failed_stage": "grade"}
    place.startRecompute(volume)
    assert place.poll().state == FAILED
    assert not list(temp.glob("lvp-recompute-*"))


class _FakePip(FakeRunning):
    def new_lines(self):
        return []

    stderr = "ERROR: no matching distribution"


@pytest.mark.parametrize("code", [0, 1, None])
def test_install_job_removes_its_private_folder(scene_with_sample, reference_result, tmp_path, code):
    """pip's private folder goes when the install job ends: done, failed or cancelled."""
    scene, _, _ = scene_with_sample
    work = tmp_path / "lvp-install-x"
    work.mkdir()
    (work / "slicer-constraints.txt").write_text("numpy==1\n")
    place = _workplace(scene, FakeRunner(reference_result))
    running = _FakePip(code=code)
    place.startInstall(running, ["numpy"], work)
    if code is None:
        place.cancel()
    place.poll()
    assert not work.exists()
