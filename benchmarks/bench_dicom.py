"""Benchmark ``lvp infer`` on DICOM input (issue 13): a PACS series read, DICOM SEG and SR written.

    python benchmarks/bench_dicom.py [--cases 10] [--threads 2] [--single 3] [--json FILE]

The first N SPIDER cases (../shared/data, else the bundled sample) are written as real DICOM
series (one file per slice, 16-bit with rescale, ``Testing/Python/dicom_writer.py``) into a
temporary folder, then:

1. ``lvp infer`` on N series in ONE call, as a child process: wall time per case and its peak RSS.
2. One series per call (what the Slicer module runs without its warm worker): best and median
   wall time of ``--single`` calls, and the peak RSS of one.
3. In this process, model loaded once: median per case of the stages ``read`` and ``dicom``
   (SEG + SR) as wall time, and as this thread's CPU time (steadier on a shared machine), and
   the number of opens of input files while reading and while writing SEG + SR.
4. The per-process cost highdicom adds on its first use: the import and the parse of its DICOM
   standard tables (a 22 MB JSON), in a fresh interpreter: seconds and resident MiB.

The load average is printed at the start and end: on a shared machine every figure moves with it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing" / "Python"))  # dicom_writer: the tests' DICOM series writer


def default_inputs(n: int) -> list[Path]:
    spider = Path(os.environ.get("LVP_SHARED_DATA", REPO.parent / "shared" / "data")) / "spider-t2-space"
    found = sorted(spider.glob("*_t2.nii.gz"))[:n] if spider.is_dir() else []
    return found or [REPO / "Resources" / "Sample" / "spider_sample_t2.nii.gz"] * n


def write_dicom_cases(inputs: list[Path], root: Path) -> list[Path]:
    import SimpleITK as sitk
    from dicom_writer import write_series

    folders = []
    for k, path in enumerate(inputs):
        folder = root / f"{k:02d}_{path.name.split('_')[0]}"
        write_series(sitk.ReadImage(str(path)), folder, patient_id=f"BENCH{k:02d}")
        folders.append(folder)
    return folders


def _child(args: list[str], threads: int) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) not in (0, 3):
        raise SystemExit(f"{' '.join(args)} failed:\n{err[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def in_process(folders: list[Path], out: Path) -> dict:
    """Stage medians (wall and CPU) and input-file opens, model loaded once."""
    import lvp.pipeline as pipeline

    cpu: dict[str, list[float]] = {"read": [], "dicom": []}
    opens = {"read": 0, "dicom": 0}
    stage = [""]
    roots = tuple(str(f) for f in folders)

    def audit(event: str, args: tuple) -> None:
        if event == "open" and stage[0] and isinstance(args[0], (str, Path)) and str(args[0]).startswith(roots):
            opens[stage[0]] += 1

    sys.addaudithook(audit)  # counts only while a stage below is running

    def timed(name: str, fn):
        def run(*args, **kwargs):
            stage[0] = name
            t0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                cpu[name].append(time.thread_time() - t0)
                stage[0] = ""
        return run

    read, write = pipeline.read_volume, pipeline._write_dicom
    pipeline.read_volume, pipeline._write_dicom = timed("read", read), timed("dicom", write)
    try:
        segmenter = pipeline.make_segmenter()
        pipeline.run_inference(folders[0], out / "warm-up", segmenter=segmenter, html=False)
        cpu = {"read": [], "dicom": []}
        opens.update(read=0, dicom=0)
        wall: dict[str, list[float]] = {"read": [], "dicom": [], "total": []}
        for k, folder in enumerate(folders):
            report = pipeline.run_inference(folder, out / f"case{k}", segmenter=segmenter, html=False)
            for key in wall:
                wall[key].append(report["timings_s"][key])
    finally:
        pipeline.read_volume, pipeline._write_dicom = read, write
    n = len(folders)
    return {"wall_s": {k: statistics.median(v) for k, v in wall.items()},
            "cpu_s": {k: statistics.median(v) for k, v in cpu.items()},
            "opens_per_case": {k: v / n for k, v in opens.items()},
            "files_per_case": sum(len(list(f.glob("*.dcm"))) for f in folders) / n,
            "seg_mib": statistics.median((out / f"case{k}" / "segmentation.dcm").stat().st_size / 2**20
                                         for k in range(n))}


# Resident memory from /proc (ru_maxrss of a child can start at its parent's high-water mark).
HIGHDICOM_FIRST_USE = """
import json, time
def rss():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS"))
t0 = time.perf_counter(); import highdicom; t1 = time.perf_counter()
r1 = rss()
from highdicom._standard_utils import get_module_attribute_map
tables = get_module_attribute_map(); t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "tables_s": t2 - t1, "tables_mib": (rss() - r1) / 1024}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--single", type=int, default=3, help="one-series CLI calls to time (0: skip)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="lvp-bench-dicom-") as tmp:
        root = Path(tmp)
        folders = write_dicom_cases(default_inputs(args.cases), root / "dicom")
        lvp = [sys.executable, "-m", "lvp", "infer"]
        wall, rss = _child([*lvp, *map(str, folders), "-o", str(root / "batch"), "--no-html", "-q"], args.threads)
        results["batch"] = {"per_case_s": wall / len(folders), "peak_rss_mib": rss}
        print(f"lvp infer, {len(folders)} DICOM series in one call: {wall / len(folders):.3f} s per case "
              f"(wall, start-up and model load included); peak RSS {rss:.0f} MiB")
        if args.single:
            runs = [_child([*lvp, str(folders[0]), "-o", str(root / f"single{k}"), "--progress-json"], args.threads)
                    for k in range(args.single)]
            walls = [w for w, _ in runs]
            results["single"] = {"best_s": min(walls), "median_s": statistics.median(walls), "peak_rss_mib": runs[0][1]}
            print(f"lvp infer, one DICOM series per call (--progress-json): best {min(walls):.3f} s, median "
                  f"{statistics.median(walls):.3f} s of {len(walls)}; peak RSS {runs[0][1]:.0f} MiB")
        stages = in_process(folders, root / "inproc")
        results["in_process"] = stages
        w, c, o = stages["wall_s"], stages["cpu_s"], stages["opens_per_case"]
        print(f"in process (model loaded once), median per case: total {w['total']:.3f} s; read {w['read']:.3f} s "
              f"wall / {c['read']:.3f} s CPU; DICOM SEG+SR {w['dicom']:.3f} s wall / {c['dicom']:.3f} s CPU; "
              f"SEG {stages['seg_mib']:.1f} MiB")
        print(f"input-file opens per case: read {o['read']:.0f}, SEG+SR {o['dicom']:.0f} "
              f"({stages['files_per_case']:.0f} files per series)")
        first = json.loads(subprocess.run([sys.executable, "-c", HIGHDICOM_FIRST_USE], capture_output=True,
                                          text=True, check=True).stdout)
        results["highdicom_first_use"] = first
        print(f"highdicom per process: import {first['import_s']:.3f} s, then its standard tables "
              f"{first['tables_s']:.3f} s and {first['tables_mib']:.0f} MiB resident (on the first SEG)")
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
