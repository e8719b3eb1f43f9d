"""``lvp study``: manage a reader study in the reading database and analyse it.

Sub-commands: create, add-cases, add-readers, assign, import-reference, import-ai, status,
export, report. The database is ``--db URL``, else ``$LVP_DATABASE_URL``, else
``./lvp_reading.sqlite``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from lvp.errors import ConfigError, DatabaseError


def _db(args: argparse.Namespace):  # imported lazily to keep `lvp --help` fast
    from lvp.readingdb import ReadingDB

    return ReadingDB(args.db)


def _read_csv(path: str, required: list[str]) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"file not found: {p}")
    with p.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"{p}: missing column(s) {', '.join(missing)} (has {reader.fieldnames})")
        return [{k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()} for row in reader]


def cmd_create(args: argparse.Namespace) -> int:
    """Create a study."""
    from lvp.readingdb.admin import create_study

    sid = create_study(_db(args), args.study, args.description, args.washout_days)
    print(f"created study {args.study!r} (id {sid}, washout {args.washout_days} days)")
    return 0


def cmd_add_cases(args: argparse.Namespace) -> int:
    """Add cases from a CSV (case_key, image_ref, center) and/or keys on the command line."""
    from lvp.readingdb.admin import add_cases

    rows = _read_csv(args.csv, ["case_key"]) if args.csv else []
    rows += [{"case_key": k} for k in args.keys]
    if not rows:
        raise ConfigError("give case keys or --csv FILE")
    n = add_cases(_db(args), args.study, rows)
    print(f"added {n} case(s) to {args.study!r}")
    return 0


def cmd_add_readers(args: argparse.Namespace) -> int:
    """Enrol readers given by user name or from a CSV (username, display_name, center)."""
    from lvp.readingdb.admin import add_readers

    rows = _read_csv(args.csv, ["username"]) if args.csv else []
    rows += [{"username": u, "center": args.center} for u in args.usernames]
    if not rows:
        raise ConfigError("give reader user names or --csv FILE")
    n = add_readers(_db(args), args.study, rows)
    print(f"enrolled {n} reader(s) in {args.study!r}")
    return 0


def cmd_assign(args: argparse.Namespace) -> int:
    """Balanced two-session crossover assignment."""
    from lvp.readingdb.admin import assign_balanced

    n = assign_balanced(_db(args), args.study, seed=args.seed)
    print(f"created {n} assignments (2 sessions, balanced arms) in {args.study!r}")
    return 0


def cmd_import_reference(args: argparse.Namespace) -> int:
    """Import reference grades from a CSV (case_key, level, pathology, grade[, measurement, source])."""
    from lvp.readingdb.admin import import_reference

    rows = _read_csv(args.csv, ["case_key", "level", "pathology", "grade"])
    try:
        n = import_reference(_db(args), args.study, rows)
    except ValueError as err:
        raise ConfigError(f"{args.csv}: {err}") from None
    print(f"imported {n} reference grade(s)")
    return 0


def cmd_import_ai(args: argparse.Namespace) -> int:
    """Import AI grades from a CSV (case_key, level, pathology, grade[, confidence, measurement])."""
    from lvp.readingdb import AIGrade

    rows = _read_csv(args.csv, ["case_key", "level", "pathology", "grade"])
    db = _db(args)
    by_case: dict[str, list] = {}

    def num(v: str | None) -> float | None:
        return None if v in (None, "") else float(v)

    try:
        for r in rows:
            by_case.setdefault(r["case_key"], []).append(
                AIGrade(r["level"], r["pathology"], int(r["grade"]), num(r.get("confidence")),
                        num(r.get("measurement"))))
    except ValueError as err:
        raise ConfigError(f"{args.csv}: {err}") from None
    n = sum(db.store_ai_results(args.study, k, v, model_version=args.model_version) for k, v in by_case.items())
    print(f"stored {n} AI result(s)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Print the study's progress."""
    from lvp.readingdb.admin import study_status

    st = study_status(_db(args), args.study)
    if args.json:
        print(json.dumps(st, indent=1))
        return 0
    print(f"study {st['study']}: {st['cases']} cases, {st['readers']} readers, {st['assignments']} assignments, "
          f"{st['reference_grades']} reference grades, {st['ai_results']} AI results, "
          f"washout {st['washout_days']} days")
    for reader, counts in st["per_reader"].items():
        print(f"  {reader}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export the newest submitted version of every read as CSV or JSON, or the MRMC long CSV."""
    from lvp.readingdb.admin import EXPORT_FIELDS, export_columns, iter_reads

    fmt = args.format or ("json" if args.output and args.output.endswith(".json") else "csv")
    if fmt == "mrmc":
        if not args.output:
            raise ConfigError("--format mrmc needs -o FILE.csv")
        from lvp.study.export import write_mrmc_csv

        n = write_mrmc_csv(export_columns(_db(args), args.study), Path(args.output))
        print(f"exported {n} reader x unit x arm row(s) (complete designs) to {args.output}")
        return 0
    rows = iter_reads(_db(args), args.study)  # streamed: a large study never sits in memory as dicts
    out = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout
    n = 0
    try:
        if fmt == "json":
            out.write("[")
            for n, row in enumerate(rows, 1):
                out.write(("\n" if n == 1 else ",\n") + json.dumps(row))
            out.write("\n]\n")
        else:
            from lvp.csv_safe import safe_cell  # no cell runs as a spreadsheet formula

            w = csv.writer(out)
            w.writerow(EXPORT_FIELDS)
            for row in rows:  # a list per row: the same CSV as DictWriter, a third faster
                w.writerow([safe_cell(row[f]) for f in EXPORT_FIELDS])
                n += 1
    finally:
        if args.output:
            out.close()
    if args.output:
        print(f"exported {n} grade row(s) to {args.output}")
    return 0


def _one_blas_thread():  # a context manager
    """Limit BLAS to one thread: the analysis multiplies hundreds of small matrices, where OpenBLAS's
    thread hand-offs cost more than the arithmetic (measured: 1.7 s instead of 7.6 s on 2 busy cores).
    """
    try:
        from threadpoolctl import threadpool_limits  # installed with scikit-learn
    except ImportError:  # pragma: no cover
        from contextlib import nullcontext

        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def cmd_report(args: argparse.Namespace) -> int:
    """Analyse the study and write the HTML report, the analysis as JSON and the MRMC long CSV."""
    from lvp.readingdb.admin import export_columns
    from lvp.study.analysis import analyse
    from lvp.study.export import write_mrmc_csv
    from lvp.study.report import write_report

    if args.margin < 0:
        raise ConfigError("--margin is a non-negative AUC difference")
    if args.bootstrap < 100:
        raise ConfigError("--bootstrap needs at least 100 replicates")
    cols = export_columns(_db(args), args.study)
    if cols["grades"]["read"].size == 0:
        raise DatabaseError(f"study {args.study!r} has no submitted reads to analyse")
    with _one_blas_thread():
        analysis = analyse(cols, alpha=args.alpha, margin=args.margin, hypothesis=args.ai_test,
                           bootstrap=args.bootstrap, seed=args.seed)
    path = write_report(args.study, analysis, Path(args.output))
    mrmc = path.with_name(path.stem + "_mrmc.csv")
    write_mrmc_csv(cols, mrmc)
    print(f"wrote {path}, {path.with_suffix('.json')} and {mrmc}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``lvp study`` and its sub-commands."""
    p = subparsers.add_parser("study", help="reader study: reading database and analysis",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", default=None, help="database URL (default: $LVP_DATABASE_URL or "
                   "sqlite:///lvp_reading.sqlite)")
    sub = p.add_subparsers(dest="study_command", metavar="ACTION", required=True)

    def action(name: str, func, help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.add_argument("study", help="study name")
        sp.set_defaults(func=func)
        return sp

    sp = action("create", cmd_create, "create a study")
    sp.add_argument("--description", default="")
    sp.add_argument("--washout-days", type=int, default=28, help="days between a reader's sessions (28)")
    sp = action("add-cases", cmd_add_cases, "add de-identified cases")
    sp.add_argument("keys", nargs="*", help="case keys")
    sp.add_argument("--csv", help="CSV with case_key[,image_ref,center]")
    sp = action("add-readers", cmd_add_readers, "enrol readers")
    sp.add_argument("usernames", nargs="*")
    sp.add_argument("--center", default="")
    sp.add_argument("--csv", help="CSV with username[,display_name,center]")
    sp = action("assign", cmd_assign, "balanced two-session crossover assignment with washout")
    sp.add_argument("--seed", type=int, default=0)
    sp = action("import-reference", cmd_import_reference, "import reference-standard grades")
    sp.add_argument("csv", help="CSV with case_key,level,pathology,grade[,measurement,source]")
    sp = action("import-ai", cmd_import_ai, "import AI grades per case")
    sp.add_argument("csv", help="CSV with case_key,level,pathology,grade[,confidence,measurement]")
    sp.add_argument("--model-version", default="")
    sp = action("status", cmd_status, "show progress")
    sp.add_argument("--json", action="store_true")
    sp = action("export", cmd_export, "export submitted reads (CSV or JSON), or the MRMCaov long CSV")
    sp.add_argument("-o", "--output", help="file (default: stdout)")
    sp.add_argument("--format", choices=["csv", "json", "mrmc"],
                    help="mrmc: reader, case, arm, truth, score of the analysed designs (for MRMCaov/RJafroc)")
    sp = action("report", cmd_report, "statistics and HTML report (+ .json and _mrmc.csv)")
    sp.add_argument("-o", "--output", default="study_report.html")
    sp.add_argument("--ai-test", choices=["difference", "non_inferiority", "superiority"], default="difference",
                    help="test of the AI alone against the readers' average AUC (default: two-sided difference)")
    sp.add_argument("--margin", type=float, default=0.0,
                    help="non-inferiority / superiority margin on the AUC scale (e.g. 0.05)")
    sp.add_argument("--alpha", type=float, default=0.05, help="1 - confidence level (0.05)")
    sp.add_argument("--bootstrap", type=int, default=1000, help="case-bootstrap replicates for agreement (1000)")
    sp.add_argument("--seed", type=int, default=0, help="bootstrap seed (0)")
    from lvp.commands import study_db  # PostgreSQL roles and migrations

    study_db.register(sub)
