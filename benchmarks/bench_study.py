"""Benchmark ``lvp study report`` on a study of the paper's size, on SQLite and PostgreSQL.

    python benchmarks/bench_study.py [--patients 1522] [--readers 10] [--keep DIR] [--no-build DIR]

Builds a simulated study (:mod:`lvp.study.simulate`: patients x 5 levels x 3 pathologies, every
reader reads every patient in both arms of a balanced crossover: 1,522 x 10 x 2 = 30,440 reads,
456,600 grades) in a fresh SQLite file and, when ``LVP_TEST_POSTGRES_URL`` is set (see
``.ci/start-postgres.sh``), in a fresh PostgreSQL database; then runs ``lvp study report`` as a
separate process and prints its wall time, CPU time (user + system) and peak resident memory (the
child's rusage), and the same for ``lvp study export`` (CSV). On a busy machine the CPU time is the
figure to compare (the wall time then includes waiting for a core). Goal for the paper's size:
report <= 5 s and <= 500 MB. Building the study is not timed (bulk inserts; about a minute).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "LumbarVNetPro"))

STUDY = "bench"


def _measure(cmd: list[str]) -> tuple[float, float, float, str]:
    """Run ``cmd`` in a child process: wall s, CPU s (user + system), peak RSS (MB) of that child, output."""
    script = ("import resource, subprocess, sys, time\n"
              "t = time.perf_counter()\n"
              "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
              "dt = time.perf_counter() - t\n"
              "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
              "print(p.returncode, dt, u.ru_utime + u.ru_stime, u.ru_maxrss / 1024)\n"
              "sys.stderr.write(p.stdout + p.stderr)\n")
    # A wrapper process per measurement: RUSAGE_CHILDREN then covers exactly one command.
    p = subprocess.run([sys.executable, "-c", script, *cmd], capture_output=True, text=True, check=True)
    rc, dt, cpu, rss = p.stdout.split()
    if int(rc) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr}")
    return float(dt), float(cpu), float(rss), p.stderr


def _postgres_url() -> tuple[str, callable] | None:
    server = os.environ.get("LVP_TEST_POSTGRES_URL")
    if not server:
        return None
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"lvp_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(server).set(database=name).render_as_string(hide_password=False), drop


def bench(url: str, label: str, args: argparse.Namespace, out: Path, build: bool = True) -> dict:
    """Build the study at ``url`` (unless ``build`` is False) and time report and export."""
    from lvp.readingdb import ReadingDB
    from lvp.study.simulate import simulate_study

    if build:
        t = time.perf_counter()
        db = ReadingDB(url)
        counts = simulate_study(db, STUDY, patients=args.patients, readers=args.readers, seed=1)
        db.close()
        print(f"[{label}] built {counts} in {time.perf_counter() - t:.0f} s", flush=True)
    lvp = [sys.executable, "-m", "lvp.cli", "study", "--db", url]
    res = {}
    for name, cmd in (("report", [*lvp, "report", STUDY, "-o", str(out / f"report_{label}.html")]),
                      ("export (CSV)", [*lvp, "export", STUDY, "-o", str(out / f"reads_{label}.csv")])):
        load = os.getloadavg()[0]
        dt, cpu, rss, _ = _measure(cmd)
        res[name] = (dt, cpu, rss)
        print(f"[{label}] lvp study {name}: wall {dt:.2f} s, CPU {cpu:.2f} s, peak {rss:.0f} MB "
              f"(load average {load:.1f} on {os.cpu_count()} CPUs)", flush=True)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=1522)
    ap.add_argument("--readers", type=int, default=10)
    ap.add_argument("--keep", type=Path, help="write the SQLite file and outputs here (kept)")
    ap.add_argument("--no-build", type=Path, metavar="SQLITE",
                    help="time an existing SQLite study file built by an earlier --keep run")
    args = ap.parse_args()
    os.environ.setdefault("PYTHONPATH", str(REPO / "LumbarVNetPro"))
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        print(f"study: {args.patients} patients x 5 levels x 3 pathologies, {args.readers} readers, 2 arms "
              f"({args.patients * args.readers * 2} reads)")
        if args.no_build:
            bench(f"sqlite:///{args.no_build}", "sqlite", args, out, build=False)
        else:
            path = out / "bench_study.sqlite"
            path.unlink(missing_ok=True)
            bench(f"sqlite:///{path}", "sqlite", args, out)
        pg = _postgres_url()
        if pg is None:
            print("[postgresql] skipped: LVP_TEST_POSTGRES_URL not set")
        else:
            url, drop = pg
            try:
                bench(url, "postgresql", args, out)
            finally:
                drop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(benchmark process itself, building the study: peak {peak:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
