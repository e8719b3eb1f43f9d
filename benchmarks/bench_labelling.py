"""Time :func:`lvp.labelling.label_levels` against another checkout, interleaved, and check the results agree.

    python benchmarks/bench_labelling.py --base OTHER_CHECKOUT [--cases 10] [--rounds 3] [--repeat 3]

This checkout's network (ONNX Runtime, CPU) segments the bundled sample and the first ``--cases``
SPIDER series (sorted file names, from ``../shared/data`` or ``$LVP_SHARED_DATA``) once; the
classes and probabilities are kept in a temporary folder. Then, ``--rounds`` times, a child
process per checkout (``OTHER_CHECKOUT/LumbarVNetPro`` first, then this one, so both see the same
load) labels every case ``--repeat`` times; the best wall and CPU time per case are kept and the
medians over cases printed, with the load average. Each child also reports a digest of every
result (label values and dtype aside, the label array's bytes as uint8, and every instance,
warning, numbering check and fact): the two checkouts must give the same digests.

The probability map is handed over as the pipeline builds it (``lvp.preprocess.GridProbability``
unpickled by each child with its own checkout's class), so a change to that class in either
checkout shows in its figures too.
"""

from __future__ import annotations

import argparse
import ast
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import hashlib, pickle, sys, time
import numpy as np
from lvp.labelling import label_levels
folder, repeat = sys.argv[1], int(sys.argv[2])
out = {}
for path in sorted(__import__("pathlib").Path(folder).glob("*.pkl")):
    d = pickle.loads(path.read_bytes())
    args = (d["semantic"], d["volume"])
    kw = {"probability": d["probability"], "sacrum_class": d["sacrum_class"]}
    lab = label_levels(*args, **kw)  # warm-up, and the result
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        label_levels(*args, **kw)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    h = hashlib.sha256(np.asarray(lab.labels).astype(np.uint8).tobytes())
    for inst in (*lab.vertebrae, *lab.discs):
        h.update(repr((inst.to_dict(), inst.plane, inst.body_depth_mm, inst.body_centroid_lps)).encode())
    h.update(repr((lab.warnings, lab.numbering, lab.facts, lab.crop)).encode())
    out[path.stem] = (min(wall), min(cpu), h.hexdigest()[:16])
print(repr(out))
"""


def _dump(folder: Path, n_cases: int) -> list[str]:
    """Segment the sample and ``n_cases`` SPIDER series with this checkout; pickle the inputs."""
    sys.path.insert(0, str(REPO / "LumbarVNetPro"))
    import numpy as np

    from lvp.io.read import read_volume
    from lvp.pipeline import make_segmenter

    data = Path(os.environ.get("LVP_SHARED_DATA", REPO.parent / "shared" / "data")) / "spider-t2-space"
    images = [REPO / "Resources" / "Sample" / "spider_sample_t2.nii.gz"]
    images += sorted(data.glob("*_t2.nii.gz"))[:n_cases] if data.is_dir() else []
    segmenter = make_segmenter(None, "cpu")
    names = []
    for image in images:
        volume = read_volume(image)
        seg = segmenter.segment(volume)
        name = image.name.split("_t2")[0]
        (folder / f"{name}.pkl").write_bytes(pickle.dumps({
            "semantic": np.asarray(seg.semantic), "volume": volume, "probability": seg.probability,
            "sacrum_class": segmenter.sacrum_class}, protocol=5))
        names.append(name)
    return names


def _run(tree: Path, folder: Path, repeat: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree / "LumbarVNetPro"))
    done = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(repeat)], env=env, check=True,
                          capture_output=True, text=True)
    return ast.literal_eval(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, type=Path, help="the other checkout (holding LumbarVNetPro/)")
    p.add_argument("--cases", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    trees = {"base": args.base.resolve(), "this": REPO}
    with tempfile.TemporaryDirectory() as tmp:
        names = _dump(Path(tmp), args.cases)
        print(f"{len(names)} cases; load average {os.getloadavg()[0]:.2f}")
        digests: dict[str, dict] = {}
        for r in range(args.rounds):
            line = [f"round {r + 1} (load {os.getloadavg()[0]:.2f}):"]
            for label, tree in trees.items():
                res = _run(tree, Path(tmp), args.repeat)
                digests[label] = {k: v[2] for k, v in res.items()}
                wall = statistics.median(v[0] for v in res.values())
                cpu = statistics.median(v[1] for v in res.values())
                line.append(f"{label} {wall * 1e3:.1f} ms wall, {cpu * 1e3:.1f} ms CPU")
            print("  ".join(line))
    same = [k for k in digests["base"] if digests["base"][k] == digests["this"].get(k)]
    print(f"results identical on {len(same)} of {len(digests['base'])} cases"
          + ("" if len(same) == len(digests["base"]) else f"; differ: {sorted(set(digests['base']) - set(same))}"))
    return 0 if len(same) == len(digests["base"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
