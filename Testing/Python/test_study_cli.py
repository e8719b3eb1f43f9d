"""End to end: the ``lvp study`` commands, reads through the API, export and the report."""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import datetime, timedelta

import numpy as np
import pytest
from readingdb_backends import db_url  # noqa: F401 - fixture
from sklearn.metrics import cohen_kappa_score

from lvp.cli import main
from lvp.readingdb import Grade, ReadingDB

LEVELS = ["L3-L4", "L4-L5", "L5-S"]
READERS = ["ana", "ben", "cho", "dev"]
N_CASES = 14


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 6, 8, 0)

    def __call__(self) -> datetime:
        return self.now


def _write(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


@pytest.fixture
def run_study(db_url, tmp_path):  # noqa: F811
    rng = np.random.default_rng(7)
    db = ["study", "--db", db_url]
    assert main([*db, "create", "lumbar", "--washout-days", "0"]) == 0
    cases = _write(tmp_path / "cases.csv", ["case_key", "image_ref", "center"],
                   [[f"case{i:02d}", f"nifti/{i}.nii.gz", "A" if i % 2 else "B"] for i in range(N_CASES)])
    assert main([*db, "add-cases", "lumbar", "--csv", cases]) == 0
    assert main([*db, "add-readers", "lumbar", *READERS, "--center", "A"]) == 0
    assert main([*db, "assign", "lumbar", "--seed", "3"]) == 0
    ref = {(f"case{i:02d}", lvl, p): int(rng.integers(0, 4)) for i in range(N_CASES) for lvl in LEVELS
           for p in ("herniation", "canal_stenosis")}
    canal_mm = {k: 14.0 - 2.5 * g + rng.normal(0, 0.5) for k, g in ref.items() if k[2] == "canal_stenosis"}
    ref_csv = _write(tmp_path / "ref.csv", ["case_key", "level", "pathology", "grade"],
                     [[*k, g] for k, g in ref.items()])
    assert main([*db, "import-reference", "lumbar", ref_csv]) == 0
    ai = {k: g if rng.random() < 0.85 else int(np.clip(g + rng.choice([-1, 1]), 0, 3)) for k, g in ref.items()}
    ai_csv = _write(tmp_path / "ai.csv", ["case_key", "level", "pathology", "grade", "confidence"],
                    [[*k, g, 0.8] for k, g in ai.items()])
    assert main([*db, "import-ai", "lumbar", ai_csv, "--model-version", "v1"]) == 0

    clock = Clock()
    api = ReadingDB(db_url, clock=clock)
    for reader in READERS:
        for item in sorted(api.worklist(reader), key=lambda w: (w.session, w.order_index)):
            read = api.start_read(reader, item.assignment_id)
            grades = []
            for (case, lvl, p), g in ref.items():
                if case != item.case_key:
                    continue
                if item.arm == "ai_assisted" and rng.random() < 0.8:
                    grade = ai[(case, lvl, p)]  # mostly accepts the AI
                else:
                    grade = int(np.clip(g + rng.choice([-1, 0, 0, 1]) , 0, 3))
                meas = canal_mm[(case, lvl, p)] + rng.normal(0, 0.4) if p == "canal_stenosis" else None
                grades.append(Grade(lvl, p, grade, meas))
            api.save_draft(reader, read.reading_id, grades[:2])
            clock.now += timedelta(seconds=120 if item.arm == "manual" else 80)
            api.submit(reader, read.reading_id, grades[2:])
    api.close()
    return db, tmp_path, ref


def test_balanced_crossover_assignment(db_url):  # noqa: F811
    db = ["study", "--db", db_url]
    assert main([*db, "create", "lumbar"]) == 0
    assert main([*db, "add-cases", "lumbar", *[f"case{i:02d}" for i in range(N_CASES)]]) == 0
    assert main([*db, "add-readers", "lumbar", *READERS]) == 0
    assert main([*db, "assign", "lumbar"]) == 0
    assert main([*db, "assign", "lumbar"]) == 2  # only once
    api = ReadingDB(db_url)
    for reader in READERS:
        items = api.worklist(reader)
        assert len(items) == 2 * N_CASES
        by_case = {}
        for w in items:
            by_case.setdefault(w.case_key, {})[w.session] = w.arm
        assert all(set(v.values()) == {"manual", "ai_assisted"} and set(v) == {1, 2} for v in by_case.values())
        per_session = Counter((w.session, w.arm) for w in items)
        assert per_session[(1, "manual")] == per_session[(1, "ai_assisted")] == N_CASES // 2
    # half of the readers see each case first without AI
    first_manual = Counter(w.case_key for r in READERS for w in api.worklist(r)
                           if w.session == 1 and w.arm == "manual")
    assert set(first_manual.values()) == {len(READERS) // 2}
    api.close()


def test_status_export_and_report(run_study, capsys):
    db, tmp_path, ref = run_study
    capsys.readouterr()
    assert main([*db, "status", "lumbar", "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["cases"] == N_CASES and st["readers"] == len(READERS) and st["reference_grades"] == len(ref)
    assert st["per_reader"]["ana"] == {"ai_assisted:submitted": N_CASES, "manual:submitted": N_CASES}

    out_csv, out_json = tmp_path / "reads.csv", tmp_path / "reads.json"
    assert main([*db, "export", "lumbar", "-o", str(out_csv)]) == 0
    assert main([*db, "export", "lumbar", "-o", str(out_json)]) == 0
    rows = list(csv.DictReader(out_csv.open()))
    jrows = json.loads(out_json.read_text())
    assert len(rows) == len(jrows) == len(READERS) * 2 * len(ref)
    assert all(r["ai_grade_shown"] == "" for r in rows if r["arm"] == "manual")
    assert all(r["ai_grade_shown"] != "" for r in rows if r["arm"] == "ai_assisted")

    report = tmp_path / "out" / "report.html"
    assert main([*db, "report", "lumbar", "-o", str(report)]) == 0
    page = report.read_text()
    assert page.count("data:image/png;base64,") == 3  # 2 ROC figures + reading time
    assert "<td>&lt; 0.001</td>" in page  # the time ratio's p-value (constant times): not "0.000"
    analysis = json.loads(report.with_suffix(".json").read_text())
    assert analysis["sign_convention"] == "AI-assisted - manual"
    herniation = analysis["pathologies"]["herniation"]
    for arm in ("manual", "ai_assisted"):
        sub = [r for r in jrows if r["pathology"] == "herniation" and r["arm"] == arm]
        truth = np.array([r["reference_grade"] >= 2 for r in sub])
        pred = np.array([r["reader_grade"] >= 2 for r in sub])
        pooled = herniation["sens_spec"]["pooled"][arm]
        assert pooled["sensitivity"] == pytest.approx((truth & pred).sum() / truth.sum())
        assert f"{pooled['sens_ci'][0]:.3f} to {pooled['sens_ci'][1]:.3f}" in page  # the CI is shown
        assert herniation["reference_agreement"][arm]["kappa_quadratic"] == pytest.approx(cohen_kappa_score(
            [r["reference_grade"] for r in sub], [r["reader_grade"] for r in sub], weights="quadratic",
            labels=[0, 1, 2, 3]))
        assert analysis["reading_time"]["per_arm"][arm]["median"] == pytest.approx(120 if arm == "manual" else 80)
        assert analysis["reading_time"]["per_arm"][arm]["n"] == len(READERS) * N_CASES
        canal = analysis["pathologies"]["canal_stenosis"]["agreement"]["arms"][arm]
        assert canal["icc_measurement"]["icc2_1"] > 0.8
    ratio = analysis["reading_time"]["model"]["ratio_ai_vs_manual"]
    assert ratio["ratio"] == pytest.approx(80 / 120, rel=1e-3)  # constant times: the model recovers 2/3
    mrmc = herniation["auc"]["analyses"]["per_level_independent"]
    assert mrmc["readers"] == len(READERS) and mrmc["units"] == N_CASES * len(LEVELS)
    assert mrmc["positives"] + mrmc["negatives"] == mrmc["units"]
    assert mrmc["prevalence"] == pytest.approx(mrmc["positives"] / mrmc["units"])
    assert mrmc["difference"]["comparison"] == "ai_assisted - manual"
    assert mrmc["difference"]["estimate"] == pytest.approx(
        mrmc["means"]["ai_assisted"]["estimate"] - mrmc["means"]["manual"]["estimate"])
    assert mrmc["means"]["ai_assisted"]["estimate"] > mrmc["means"]["manual"]["estimate"]  # the simulated AI helps
    for t in herniation["paired_delong"].values():  # the same sign per reader
        assert t["diff"] == pytest.approx(t["auc_ai_assisted"] - t["auc_manual"])
    assert set(herniation["paired_delong"]) == set(READERS)
    assert herniation["ai_standalone"]["auc"]["auc"] > 0.8
    flow = analysis["flow"]
    assert flow["readers_enrolled"] == len(READERS) and flow["cases_enrolled"] == N_CASES
    assert flow["reads_submitted"] == 2 * len(READERS) * N_CASES and flow["assignments"] == flow["reads_submitted"]
    assert all(w["achieved"] and w["gap_days"] >= 0 for w in flow["washout"])  # washout 0 days here
    assert flow["analysed"]["herniation"]["units"] == N_CASES * len(LEVELS)
    mrmc_csv = list(csv.DictReader((tmp_path / "out" / "report_mrmc.csv").open()))
    assert len(mrmc_csv) == 2 * len(READERS) * len(ref)  # herniation + canal, every unit complete
    assert {r["arm"] for r in mrmc_csv} == {"manual", "ai_assisted"}


def test_user_errors_exit_2_without_traceback(db_url, capsys):  # noqa: F811
    assert main(["study", "--db", db_url, "status", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no study named 'nope'" in err and "Traceback" not in err
    assert main(["study", "--db", db_url, "import-reference", "nope", "/does/not/exist.csv"]) == 2
    assert main(["study", "--db", "mysql://x/y", "status", "s"]) == 2


def test_report_from_database_columns_equals_report_from_exported_rows(run_study):
    from lvp.readingdb.admin import export_columns, export_reads
    from lvp.study.analysis import analyse

    db, _, _ = run_study
    api = ReadingDB(db[2])
    a = analyse(export_columns(api, "lumbar"), bootstrap=200)
    b = analyse(export_reads(api, "lumbar"), bootstrap=200)
    api.close()
    for key in ("pathologies", "reading_time", "multiplicity"):
        assert json.dumps(a[key], sort_keys=True, default=float) == json.dumps(b[key], sort_keys=True, default=float)


def test_commands_print_no_alembic_log_lines(tmp_path):
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'quiet.sqlite'}"
    p = subprocess.run([sys.executable, "-m", "lvp.cli", "study", "--db", url, "create", "quiet"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "created study" in p.stdout
    assert "alembic" not in p.stderr.lower() and "INFO" not in p.stderr


def test_simulated_study_with_the_papers_design(db_url, tmp_path):  # noqa: F811
    from lvp.study.simulate import LEVELS as SIM_LEVELS
    from lvp.study.simulate import PATHOLOGIES, simulate_study

    api = ReadingDB(db_url)
    counts = simulate_study(api, "sim", patients=40, readers=4, seed=2, time_ratio=0.61, period_ratio=0.95)
    api.close()
    assert counts == {"cases": 40, "readers": 4, "reads": 320, "grades": 320 * 15}
    report = tmp_path / "sim.html"
    assert main(["study", "--db", db_url, "report", "sim", "-o", str(report), "--ai-test", "non_inferiority",
                 "--margin", "0.05", "--bootstrap", "200"]) == 0
    analysis = json.loads(report.with_suffix(".json").read_text())
    flow = analysis["flow"]
    assert flow["reads_submitted"] == 320 and flow["washout_days_required"] == 28
    assert all(w["achieved"] and w["gap_days"] >= 28 for w in flow["washout"])
    model = analysis["reading_time"]["model"]
    assert abs(model["ratio_ai_vs_manual"]["log_estimate"] - np.log(0.61)) < 3 * model["ratio_ai_vs_manual"]["log_se"]
    assert model["ratio_period_2_vs_1"]["ci_low"] < 1.0
    assert set(analysis["pathologies"]) == set(PATHOLOGIES)
    assert analysis["options"]["hypothesis"] == "non_inferiority" and analysis["options"]["margin"] == 0.05
    assert "one-sided non-inferiority test, margin 0.050 AUC" in report.read_text()
    rows = list(csv.DictReader(report.with_name("sim_mrmc.csv").open()))
    assert len(rows) == len(PATHOLOGIES) * 4 * 2 * 40 * len(SIM_LEVELS)


def test_two_simulated_studies_in_one_database_keep_their_own_cases(tmp_path):
    """Case keys repeat between studies: each study's reference and AI grades stay on its own cases."""
    from sqlalchemy import func, select

    from lvp.readingdb.models import AIResult, Case, ReferenceGrade
    from lvp.study.simulate import simulate_study

    api = ReadingDB(f"sqlite:///{tmp_path / 'two.db'}")
    first = simulate_study(api, "one", patients=6, readers=2, seed=1)
    second = simulate_study(api, "two", patients=6, readers=2, seed=2)
    with api.session() as sess:
        per_study = dict(sess.execute(select(Case.study_id, func.count(ReferenceGrade.id))
                                      .join(ReferenceGrade, ReferenceGrade.case_id == Case.id)
                                      .group_by(Case.study_id)).all())
        ai = dict(sess.execute(select(Case.study_id, func.count(AIResult.id))
                               .join(AIResult, AIResult.case_id == Case.id).group_by(Case.study_id)).all())
    api.close()
    assert first == second
    assert len(per_study) == 2 and len(set(per_study.values())) == 1 and per_study == ai
