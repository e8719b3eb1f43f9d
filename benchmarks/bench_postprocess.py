"""Benchmark the post-processing stages of ``lvp infer``: level labelling and measurements.

    python benchmarks/bench_postprocess.py [--repeat 5] [--reference] [--cases N] [--data DIR]

The network runs once per case (ONNX Runtime, CPU, 2 threads; its time is printed but is not
the subject); then :func:`lvp.labelling.label_levels`, :func:`lvp.measure.measure_levels` and
:func:`lvp.planes.scan_planes` run ``--repeat`` times each and the best wall time and the best
CPU time (``time.process_time``, all threads of this process) are printed per stage. Best-of-N
is the figure to compare on a shared, loaded machine.

Inputs: the bundled sample (``Resources/Sample/spider_sample_t2.nii.gz``) and, when the shared
data folder is present (``../shared/data`` or ``$LVP_SHARED_DATA``), its SPIDER cases
(``--cases`` of them, default 5). ``--reference`` labels the reference masks instead of the
network output (no model needed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "LumbarVNetPro"))


def _best(fn, repeat: int):
    wall, cpu, result = [], [], None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return result, min(wall), min(cpu)


def _cases(args) -> list[tuple[str, Path, Path | None]]:
    sample = REPO / "Resources" / "Sample"
    out = [("sample", sample / "spider_sample_t2.nii.gz", sample / "spider_sample_labels.nii.gz")]
    data = Path(args.data) if args.data else Path(os.environ.get("LVP_SHARED_DATA", REPO.parent / "shared" / "data"))
    spider = data / "spider-t2-space"
    if spider.is_dir():
        for img in sorted(spider.glob("*_t2.nii.gz"))[: args.cases]:
            lab = img.with_name(img.name.replace("_t2.nii.gz", "_labels.nii.gz"))
            out.append((img.name.split("_")[0], img, lab if lab.exists() else None))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--cases", type=int, default=5, help="SPIDER cases from the shared data (when present)")
    p.add_argument("--data", default=None, help="shared data folder (default ../shared/data)")
    p.add_argument("--reference", action="store_true", help="label the reference masks, not the network output")
    p.add_argument("--model", default=None)
    args = p.parse_args(argv)

    import SimpleITK as sitk

    from lvp.datasets import harmonise
    from lvp.io.volume import canonical_volume
    from lvp.labelling import label_levels
    from lvp.measure import measure_levels
    from lvp.planes import scan_planes

    seg = None
    if not args.reference:
        from lvp.segmenter import NetworkSegmenter

        seg = NetworkSegmenter(args.model, device="cpu", threads=2)
    rows = []
    print(f"{'case':12s} {'shape':>16s} {'network':>8s} | best of {args.repeat}: wall (cpu) s: "
          f"{'labelling':>15s} {'measure':>15s} {'planes':>15s} {'post total':>10s}  levels")
    for name, img, lab_path in _cases(args):
        vol = canonical_volume(sitk.ReadImage(str(img)))
        vol.array = np.array(vol.array)
        t_net = float("nan")
        if seg is None:
            if lab_path is None:
                continue
            sem = harmonise(np.array(canonical_volume(sitk.ReadImage(str(lab_path))).array), "lvp3")
            prob = None
        else:
            t0 = time.perf_counter()
            out = seg.segment(vol)
            t_net = time.perf_counter() - t0
            sem, prob = out.semantic, out.probability
        lab, w_l, c_l = _best(lambda s=sem, v=vol, pr=prob: label_levels(s, v, probability=pr), args.repeat)
        _, w_m, c_m = _best(lambda v=vol, la=lab: measure_levels(v, la), args.repeat)
        _, w_p, c_p = _best(lambda v=vol, la=lab: scan_planes(v, la), args.repeat)
        total = w_l + w_m + w_p
        rows.append((w_l, w_m, w_p, total))
        print(f"{name:12s} {str(vol.shape):>16s} {t_net:8.3f} | {'':20s} {w_l:6.3f} ({c_l:6.3f}) "
              f"{w_m:6.3f} ({c_m:6.3f}) {w_p:6.3f} ({c_p:6.3f}) {total:10.3f}  {','.join(d.name for d in lab.discs)}")
    if len(rows) > 1:
        med = [statistics.median(r[k] for r in rows) for k in range(4)]
        print(f"median over {len(rows)} cases: labelling {med[0]:.3f} s, measure {med[1]:.3f} s, "
              f"planes {med[2]:.3f} s, post-processing {med[3]:.3f} s (wall, best of {args.repeat})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
