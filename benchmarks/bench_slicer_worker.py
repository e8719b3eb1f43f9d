"""Benchmark the Slicer module's Run, logic level (no Qt): warm worker vs one process per case.

    python benchmarks/bench_slicer_worker.py [--rounds 8] [--input IMAGE] [--json FILE]

Times :meth:`LumbarVNetProLib.logic.CaseLogic.process` on a real MRML scene (slicer-core): from
Run (the input volume written for the core, the model folder's sha256 checked, the job started)
to the result loaded into the scene (segmentation, labels, planes, grade table), on the bundled
sample with the bundled model, device cpu. Two logics, one each way:

* ``per-case``: :class:`~LumbarVNetProLib.process.ProcessRunner`, one ``python -m lvp infer``
  child per case (what the module did before the worker);
* ``worker``: :class:`~LumbarVNetProLib.worker.WorkerRunner`, the module's default, whose first
  case also starts the ``lvp serve`` worker (reported apart); later cases reuse it;
* ``before``: one child per case with the input copy gzip-compressed (``input.nii.gz``), as the
  module ran before issue 13's two changes.

The rounds are interleaved (the three ways, in a rotating order) so that a shared machine's load
moves them alike; medians and the load average at the start and end are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "LumbarVNetPro"))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the figures (and write them to ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8, help="cases per way after the worker's first (default 8)")
    parser.add_argument("--input", type=Path, default=REPO / "Resources" / "Sample" / "spider_sample_t2.nii.gz")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)

    import slicer  # slicer-core: real MRML

    from LumbarVNetProLib import logic as logic_module
    from LumbarVNetProLib import scene as lvpscene
    from LumbarVNetProLib.logic import CaseLogic
    from LumbarVNetProLib.process import ProcessRunner
    from LumbarVNetProLib.worker import WorkerRunner

    load_start = os.getloadavg()
    scene = slicer.vtkMRMLScene()
    volume = lvpscene.volume_node_from_file(scene, args.input, "input")
    logics = {
        "per-case": CaseLogic(scene, runner=ProcessRunner(), python=sys.executable),
        "worker": CaseLogic(scene, runner=WorkerRunner(), python=sys.executable),
        "before": CaseLogic(scene, runner=ProcessRunner(), python=sys.executable),
    }
    input_names = {"per-case": logic_module.INPUT_NAME, "worker": logic_module.INPUT_NAME, "before": "input.nii.gz"}
    times: dict[str, list[float]] = {name: [] for name in logics}
    splits: dict[str, list[tuple]] = {name: [] for name in logics}  # start, child, load
    with tempfile.TemporaryDirectory(prefix="lvp-bench-worker-") as tmp:

        def run(name: str, index: int) -> float:
            lvpscene.remove_volume_results(scene, volume)  # the previous result: not timed (another case's)
            logic_module.INPUT_NAME = input_names[name]
            logic = logics[name]
            # CaseLogic.process, step by step (same calls) to split the time.
            t0 = time.perf_counter()
            job = logic.startInference(volume, Path(tmp) / f"{name}-{index}", "cpu")
            t1 = time.perf_counter()
            job.running.wait()
            t2 = time.perf_counter()
            logic.finishInference(job)
            nodes = logic.loadResult(job.outputDir, volume)
            t3 = time.perf_counter()
            if nodes.segmentation is None:
                raise SystemExit(f"{name}: no segmentation loaded")
            if index:  # the first cases are reported apart
                splits[name].append((t1 - t0, t2 - t1, t3 - t2))
            return t3 - t0

        try:
            first_worker = run("worker", 0)  # includes the worker's start (interpreter, imports, model)
            first_per_case = run("per-case", 0)
            names = list(logics)
            for i in range(1, args.rounds + 1):
                for name in names[i % 3:] + names[: i % 3]:
                    times[name].append(run(name, i))
            worker_pid = logics["worker"].runner.worker.pid
            ready_s = logics["worker"].runner.worker.readySeconds
        finally:
            logics["worker"].shutdown()
    figures = {
        "input": str(args.input),
        "rounds": args.rounds,
        "first_case_s": {"worker (incl. start)": round(first_worker, 3), "per-case": round(first_per_case, 3)},
        "worker_ready_s": None if ready_s is None else round(ready_s, 3),
        "median_s": {name: round(statistics.median(v), 3) for name, v in times.items()},
        "best_s": {name: round(min(v), 3) for name, v in times.items()},
        "all_s": {name: [round(t, 3) for t in v] for name, v in times.items()},
        # Medians of: writing the input copy + model check + start; the child's case; report + scene import.
        "split_median_s": {
            name: dict(zip(("start", "child", "load"), (round(statistics.median(x), 3) for x in zip(*v))))
            for name, v in splits.items()
        },
        "worker_pid_reused": worker_pid,
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    med = figures["median_s"]
    print(f"Run -> result loaded, {args.input.name}, device cpu, {args.rounds} interleaved rounds (2nd case on)")
    print(f"  per-case process: median {med['per-case']:.3f} s  best {figures['best_s']['per-case']:.3f} s")
    print(f"  warm worker:      median {med['worker']:.3f} s  best {figures['best_s']['worker']:.3f} s"
          f"  ({med['per-case'] / med['worker']:.2f}x faster)")
    print(f"  before (per-case process, gzip input copy): median {med['before']:.3f} s  "
          f"best {figures['best_s']['before']:.3f} s  ({med['before'] / med['worker']:.2f}x the worker's)")
    for name, split in figures["split_median_s"].items():
        print(f"  {name}: start {split['start']:.3f} s, child {split['child']:.3f} s, "
              f"load {split['load']:.3f} s (medians)")
    print(f"  first case: worker incl. its start {first_worker:.3f} s (ready after {figures['worker_ready_s']} s), "
          f"per-case {first_per_case:.3f} s")
    print(f"  load average: start {figures['loadavg_start']}, end {figures['loadavg_end']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
