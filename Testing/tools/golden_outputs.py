"""Fingerprints of ``lvp infer`` outputs, to check that a refactoring changes no result.

Runs ``lvp infer`` from a given checkout (its ``LumbarVNetPro/`` folder goes first on
``PYTHONPATH``, so the interpreter's own installed copy is not what runs) on the bundled sample
and the first N SPIDER cases of ``../shared/data``, then writes one line per case:

* ``seg``: sha256 of the segmentation's voxels (``segmentation.nii.gz`` read with SimpleITK, so
  gzip timestamps and header padding do not count), plus its size, spacing, origin, direction;
* ``report``: sha256 of ``report.json`` with what legitimately differs between runs removed
  (``timings_s``, ``created``, ``lvp_version``, the input ``path``);
* ``html``: sha256 of ``report.html``'s content: entities unescaped (``&#x27;`` and ``&#39;`` are
  one quote), whitespace between tags dropped, the input path and the total time removed.

Usage (compare two commits without the concurrent edits of a shared tree)::

    git worktree add /tmp/before <commit>
    python Testing/tools/golden_outputs.py /tmp/before -o /tmp/before.json
    python Testing/tools/golden_outputs.py /work/main -o /tmp/after.json
    python Testing/tools/golden_outputs.py --compare /tmp/before.json /tmp/after.json

``--compare`` exits 1 and names the cases whose fingerprints differ.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

# Keys whose values change from run to run or from checkout to checkout, not with the result.
VOLATILE_KEYS = frozenset({"timings_s", "created", "lvp_version", "path"})
REPO = Path(__file__).resolve().parents[2]
SHARED_SPIDER = REPO.parent / "shared" / "data" / "spider-t2-space"


def cases(checkout: Path, spider: Path, count: int) -> dict[str, Path]:
    """The bundled sample and the first ``count`` SPIDER images (sorted by name)."""
    found = {"sample": checkout / "Resources" / "Sample" / "spider_sample_t2.nii.gz"}
    if spider.is_dir():
        for image in sorted(spider.glob("spider*_t2.nii.gz"))[:count]:
            found[image.name.removesuffix("_t2.nii.gz")] = image
    return found


def stripped(value: object) -> object:
    """``value`` without the volatile keys, at any depth."""
    if isinstance(value, dict):
        return {k: stripped(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [stripped(v) for v in value]
    return value


def html_content(text: str, result: Path) -> str:
    """``report.html`` reduced to what a reader sees (see the module docstring)."""
    report = json.loads((result / "report.json").read_text())
    text = html.unescape(re.sub(r">\s+<", "><", text))
    text = text.replace(str(report["input"]["path"]), "INPUT")
    return re.sub(r"Total time</td><td>[^<]*</td>", "Total time</td><td>T</td>", text)


def fingerprint(result: Path) -> dict[str, object]:
    """The fingerprint of one result folder (see the module docstring)."""
    import SimpleITK as sitk

    out: dict[str, object] = {}
    report = result / "report.json"
    if report.is_file():
        data = stripped(json.loads(report.read_text()))
        out["status"] = data.get("status") if isinstance(data, dict) else None
        out["report"] = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    page = result / "report.html"
    if page.is_file():
        out["html"] = hashlib.sha256(html_content(page.read_text(), result).encode()).hexdigest()
    seg = result / "segmentation.nii.gz"
    if seg.is_file():
        image = sitk.ReadImage(str(seg))
        voxels = sitk.GetArrayViewFromImage(image)
        out["seg"] = hashlib.sha256(voxels.tobytes()).hexdigest()
        out["seg_dtype"] = str(voxels.dtype)
        out["seg_geometry"] = [list(image.GetSize()), [round(v, 6) for v in image.GetSpacing()],
                               [round(v, 6) for v in image.GetOrigin()], [round(v, 6) for v in image.GetDirection()]]
    return out


def run(checkout: Path, spider: Path, count: int) -> dict[str, dict[str, object]]:
    """Run ``lvp infer`` of ``checkout`` on the cases, one process, and fingerprint each result."""
    inputs = cases(checkout, spider, count)
    env = dict(os.environ, PYTHONPATH=str(checkout / "LumbarVNetPro"), MPLBACKEND="Agg")
    with tempfile.TemporaryDirectory(prefix="lvp-golden-") as tmp:
        results = {}
        for name, image in inputs.items():
            out = Path(tmp) / name
            proc = subprocess.run([sys.executable, "-m", "lvp", "infer", str(image), "-o", str(out), "-q"],
                                  env=env, cwd=tmp, capture_output=True, text=True)
            where = subprocess.run([sys.executable, "-c", "import lvp; print(lvp.__file__)"], env=env, cwd=tmp,
                                   capture_output=True, text=True).stdout.strip()
            if not where.startswith(str(checkout)):
                raise SystemExit(f"lvp imported from {where}, not from {checkout}")
            results[name] = {"exit": proc.returncode, **fingerprint(out)}
            print(name, results[name].get("status"), proc.returncode, file=sys.stderr)
    return results


def compare(before: Path, after: Path) -> int:
    """Print the cases whose fingerprints differ; 0 when all are identical."""
    a, b = json.loads(before.read_text()), json.loads(after.read_text())
    differ = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    for k in differ:
        print(f"DIFFERS {k}: {a.get(k)} != {b.get(k)}")
    print(f"{len(set(a) | set(b)) - len(differ)} identical, {len(differ)} different")
    return 1 if differ else 0


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", nargs="?", type=Path, default=REPO)
    parser.add_argument("-o", "--output", type=Path)
    parser.add_argument("-n", "--cases", type=int, default=10, help="SPIDER cases besides the sample")
    parser.add_argument("--spider", type=Path, default=SHARED_SPIDER)
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    results = run(args.checkout.resolve(), args.spider, args.cases)
    text = json.dumps(results, indent=1, sort_keys=True)
    if args.output:
        args.output.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
