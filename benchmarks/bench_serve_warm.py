"""Benchmark ``lvp serve``'s warm-up (issue 13): a worker's first job with and without it.

    python benchmarks/bench_serve_warm.py [--rounds 3] [--idle 2] [--json FILE]

For each input kind (the bundled sample as NIfTI, and the same image written as a DICOM series
by ``Testing/Python/dicom_writer.py``) and each ``--warm`` mode (``off``, ``idle``,
``before-ready``), a fresh ``lvp serve --device cpu`` is started and timed two ways:

* *after idle*: the client waits for "ready", lets the worker idle ``--idle`` seconds (a client
  that starts its worker ahead of the first case), then sends two jobs one after the other:
  first and second job (send to ``job_done``), resident memory when ready and after the idle time;
* *at once*: the job is written as the worker starts (the Slicer module's way): "ready" and the
  first job's end, both from the start.

The rounds are interleaved (every mode once per round, in a rotating order) so a shared
machine's load moves them alike; medians and the load average at the start and end are printed.
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
SAMPLE = REPO / "Resources" / "Sample" / "spider_sample_t2.nii.gz"
MODES = ("off", "idle", "before-ready")


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class _Serve:
    def __init__(self, mode: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO / "LumbarVNetPro"))
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "lvp", "serve", "--device", "cpu", "--warm", mode],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env=env)
        self.jobs = 0

    def send(self, image: Path, out: Path) -> None:
        self.jobs += 1
        self.proc.stdin.write(json.dumps({"job": self.jobs, "args": [str(image), "-o", str(out), "--quiet"]}) + "\n")
        self.proc.stdin.flush()

    def until(self, event: str) -> dict:
        for line in iter(self.proc.stdout.readline, ""):
            data = json.loads(line) if line.startswith("{") else {}
            if data.get("event") == event:
                if event == "job_done" and data.get("exit_code"):
                    raise SystemExit(f"job failed: {data}")
                return data
        raise SystemExit("lvp serve ended early")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(60)


def after_idle(mode: str, image: Path, idle_s: float, tmp: Path) -> dict:
    """Ready, ``idle_s`` of idling, then two jobs in turn."""
    serve = _Serve(mode)
    serve.until("ready")
    ready = time.perf_counter() - serve.t0
    rss_ready = _rss_mib(serve.proc.pid)
    time.sleep(idle_s)
    rss_idle = _rss_mib(serve.proc.pid)
    times = []
    for name in ("one", "two"):
        t = time.perf_counter()
        serve.send(image, tmp / name)
        serve.until("job_done")
        times.append(time.perf_counter() - t)
    serve.close()
    return {"ready_s": ready, "first_s": times[0], "second_s": times[1], "rss_ready_mib": rss_ready,
            "rss_idle_mib": rss_idle}


def at_once(mode: str, image: Path, tmp: Path) -> dict:
    """The job written as the worker starts; times from the start."""
    serve = _Serve(mode)
    serve.send(image, tmp / "once")
    serve.until("ready")
    ready = time.perf_counter() - serve.t0
    serve.until("job_done")
    done = time.perf_counter() - serve.t0
    serve.close()
    return {"ready_s": ready, "done_s": done}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the figures (and write them to ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=float, default=2.0, help="seconds the worker idles before its first job")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "Testing" / "Python"))
    import SimpleITK as sitk
    from dicom_writer import write_series

    load_start = os.getloadavg()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="lvp-bench-warm-") as tmp_name:
        tmp = Path(tmp_name)
        write_series(sitk.ReadImage(str(SAMPLE)), tmp / "series")
        images = {"nifti": SAMPLE, "dicom": tmp / "series"}
        for r in range(args.rounds):
            for i in range(len(MODES)):
                mode = MODES[(r + i) % len(MODES)]
                for kind, image in images.items():
                    work = Path(tempfile.mkdtemp(dir=tmp))
                    results.setdefault(f"{kind} {mode} after idle", []).append(after_idle(mode, image, args.idle, work))
                    results.setdefault(f"{kind} {mode} at once", []).append(at_once(mode, image, work))
    medians = {key: {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}
               for key, runs in results.items()}
    print(f"lvp serve --device cpu, bundled sample, {args.rounds} interleaved rounds, idle {args.idle} s; medians")
    for key, m in medians.items():
        print(f"  {key:28s} " + ", ".join(f"{k} {v}" for k, v in m.items()))
    print(f"  load average: start {[round(x, 2) for x in load_start]}, end {[round(x, 2) for x in os.getloadavg()]}")
    if args.json:
        args.json.write_text(json.dumps({"medians": medians, "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
