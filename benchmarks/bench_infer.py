"""Benchmark ``lvp infer``: wall time per case, stage timings, peak memory, and the speed ratio
to an nnU-Net-class network on the same input in the same process (issue 13: everything in one run).

    python benchmarks/bench_infer.py [--cases 10] [--threads 2] [--inputs FILE...] [--model DIR]
                                     [--single 5] [--worker 5] [--no-cli] [--no-full-fov]
                                     [--no-nnunet] [--semantic-masks] [--json FILE]

1. ``lvp infer`` over N SPIDER-sized series in ONE call, as a child process (what a user runs;
   includes interpreter start, imports and model loading): wall time / N is the paper's figure,
   with the child's own peak RSS (``wait4``).
1b. One case per call, as the Slicer module runs it (``python -m lvp infer SAMPLE -o OUT
   --progress-json``): best and median wall time of ``--single`` calls, interpreter start,
   imports and model load included, and the peak RSS of one such process (a SPIDER case).
1c. The warm worker (``lvp serve``): time to "ready", then the wall time of each of ``--worker``
   jobs on the bundled sample (send to ``job_done``).
1d. Full-field-of-view volumes (1024 x 1024 x 280 voxels, 294 M; made in a temporary folder from
   the first input by in-plane linear upsampling and zero slices left and right; never kept), in
   8 bits, in 16 bits (as DICOM-derived volumes are) and in 16 bits with content in every slice
   (beyond the memory budget: refused before the network): one ``lvp infer`` child each, its
   wall time, peak RSS and status (complete, partial or the refusal's message).
2. The same cases in this process through :func:`lvp.pipeline.run_inference` with one shared
   segmenter: per-stage timings (median over cases) and peak resident memory (measured before
   torch is imported for step 3).
3. nnU-Net's default 3d_fullres topology planned for the first input (nnU-Net v2's
   ``get_pool_and_conv_props`` and its patch-size reduction under the 8 GB VRAM reference,
   re-implemented here), built as MONAI DynUNet, run with nnU-Net's sliding window (step 0.5,
   Gaussian weighting, no mirroring TTA) on the same normalised input; reported as the ratio of
   its time to LVP's network stage and to LVP's whole case (in-process and batch).

Inputs default to the SPIDER cases in ../shared/data (when present), else the bundled sample
repeated. ``--semantic-masks`` replaces the network by the reference masks (for a machine
without the trained model; then the network figures are meaningless and say so). The load
average is printed at the start and end: on a shared machine every figure moves with it.

Over 400 lines on purpose: one run measures every figure docs/performance.md quotes
(batch, single case, worker, full field of view, nnU-Net-class ratio) under the same conditions.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from copy import deepcopy
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- nnU-Net v2 default planning
def _pool_and_conv_props(spacing, patch_size, min_feature_map_size=4, max_numpool=999999):
    """nnU-Net v2 ``get_pool_and_conv_props`` (network_topology.py), same logic."""
    import numpy as np

    dim = len(spacing)
    current_spacing = list(spacing)
    current_size = list(patch_size)
    pool_op_kernel_sizes = [[1] * dim]
    conv_kernel_sizes = []
    num_pool_per_axis = [0] * dim
    kernel_size = [1] * dim
    while True:
        valid = [i for i in range(dim) if current_size[i] >= 2 * min_feature_map_size]
        if len(valid) < 1:
            break
        spacings_of_axes = [current_spacing[i] for i in valid]
        min_spacing_of_valid = min(spacings_of_axes)
        valid = [i for i in valid if current_spacing[i] / min_spacing_of_valid < 2]
        valid = [i for i in valid if num_pool_per_axis[i] < max_numpool]
        if len(valid) == 1 and current_size[valid[0]] < 3 * min_feature_map_size:
            break
        if len(valid) < 1:
            break
        for d in range(dim):
            if kernel_size[d] != 3 and current_spacing[d] / min(current_spacing) < 2:
                kernel_size[d] = 3
        pool = [1] * dim
        for v in valid:
            pool[v] = 2
            num_pool_per_axis[v] += 1
            current_spacing[v] *= 2
            current_size[v] = np.ceil(current_size[v] / 2)
        pool_op_kernel_sizes.append(pool)
        conv_kernel_sizes.append(deepcopy(kernel_size))
    must_be_divisible_by = 2 ** np.array(num_pool_per_axis)
    patch = np.array(patch_size)
    patch = np.where(patch % must_be_divisible_by == 0, patch,
                     patch + must_be_divisible_by - patch % must_be_divisible_by).astype(int)
    conv_kernel_sizes.append([3] * dim)
    return num_pool_per_axis, pool_op_kernel_sizes, conv_kernel_sizes, patch, must_be_divisible_by


def _feature_map_size(patch, strides, features, n_classes=4):
    """nnU-Net's VRAM proxy: summed conv output sizes of PlainConvUNet's encoder and decoder."""
    import numpy as np

    sizes, size = [], np.array(patch)
    for s in strides:
        size = size // np.array(s)
        sizes.append(size)
    total = sum(2 * int(np.prod(sz)) * f for sz, f in zip(sizes, features))  # encoder, 2 convs/stage
    for sz, f in zip(sizes[:-1], features[:-1]):  # decoder: transposed conv + 2 convs + seg head
        total += 3 * int(np.prod(sz)) * f + int(np.prod(sz)) * n_classes
    return total


def plan_3d_fullres(spacing, shape):
    """Patch size, kernel sizes, strides and features of nnU-Net's 3d_fullres for one input."""
    import numpy as np

    spacing = np.asarray(spacing, float)
    shape = np.asarray(shape)
    reference = 560_000_000 * (8 / 8)  # UNet_reference_val_3d at the default 8 GB target, batch size 2
    tmp = 1 / spacing
    initial = [round(i) for i in tmp * (256 ** 3 / np.prod(tmp)) ** (1 / 3)]
    initial = np.array([min(i, j) for i, j in zip(initial, shape)])
    _, strides, kernels, patch, divisible = _pool_and_conv_props(spacing, initial)

    def features(n):
        return [min(320, 32 * 2 ** i) for i in range(n)]

    while _feature_map_size(patch, strides, features(len(strides))) > reference:
        axis = int(np.argsort(patch / shape)[-1])
        trial = list(patch)
        trial[axis] -= divisible[axis]
        *_, divisible = _pool_and_conv_props(spacing, trial)
        patch = list(patch)
        patch[axis] -= divisible[axis]
        _, strides, kernels, patch, divisible = _pool_and_conv_props(spacing, patch)
    return {"patch_size": [int(p) for p in patch], "strides": strides, "kernel_sizes": kernels,
            "features": features(len(strides))}


def run_nnunet_class(volume, threads: int) -> dict:
    """Time DynUNet with the planned topology, sliding window as nnU-Net predicts."""
    import numpy as np
    import torch
    from monai.inferers import sliding_window_inference
    from monai.networks.nets import DynUNet

    torch.set_num_threads(threads)
    # nnU-Net transposes the lowest-resolution axis first; the canonical (lr, si, ap) already has it.
    plan = plan_3d_fullres(volume.spacing, volume.shape)
    net = DynUNet(3, 1, 4, kernel_size=plan["kernel_sizes"], strides=plan["strides"],
                  upsample_kernel_size=plan["strides"][1:], filters=plan["features"],
                  norm_name=("instance", {"affine": True}), act_name=("leakyrelu", {"negative_slope": 0.01}),
                  deep_supervision=False, res_block=False).eval()
    img = volume.array.astype(np.float32)
    img = (img - img.mean()) / (img.std() + 1e-8)  # nnU-Net's z-score for MRI
    x = torch.from_numpy(img)[None, None]
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = sliding_window_inference(x, plan["patch_size"], 1, net, overlap=0.5, mode="gaussian")
        out.argmax(1)
    plan["seconds"] = time.perf_counter() - t0
    plan["parameters"] = int(sum(p.numel() for p in net.parameters()))
    return plan


# ---------------------------------------------------------------- LVP
def default_inputs(n: int) -> list[Path]:
    spider = Path(os.environ.get("LVP_SHARED_DATA", REPO.parent / "shared" / "data")) / "spider-t2-space"
    files = sorted(p for p in spider.glob("*.nii.gz") if "_labels" not in p.name) if spider.is_dir() else []
    if not files:
        files = [REPO / "Resources" / "Sample" / "spider_sample_t2.nii.gz"]
    return [files[i % len(files)] for i in range(n)]


def mask_of(path: Path) -> Path:
    return path.with_name(path.name.replace(".nii.gz", "").rsplit("_", 1)[0] + "_labels.nii.gz")


def _child_env(threads: int) -> dict:
    return dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))


def _spawn(args: list[str], env: dict) -> tuple[subprocess.Popen, float, Any]:
    err = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty child never blocks on it
    t0 = time.perf_counter()
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True), t0, err


def _reap(proc: subprocess.Popen, t0: float, err: Any) -> tuple[float, float, int, str]:
    """Wait for a child started by :func:`_spawn`: wall, its own peak RSS (MiB, ``wait4``), exit code,
    stderr tail."""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err.seek(0)
    text = err.read()
    err.close()
    return wall, usage.ru_maxrss / 1024, proc.returncode, text[-2000:]


def run_cli(inputs: list[Path], out: Path, threads: int, semantic: bool) -> tuple[float, float]:
    """Wall time per case and the child's peak RSS of ``lvp infer`` over every input in one call."""
    env = _child_env(threads)
    if semantic:  # one case per call then (--semantic takes one input): not the paper's figure
        t0 = time.perf_counter()
        for i, p in enumerate(inputs):
            subprocess.run([sys.executable, "-m", "lvp", "infer", str(p), "-o", str(out / str(i)),
                            "--semantic", str(mask_of(p))], check=False, env=env, capture_output=True)
        return (time.perf_counter() - t0) / len(inputs), float("nan")
    # Distinct paths so every case gets its own output folder (links to the same file are fine).
    links = out / "inputs"
    links.mkdir(parents=True, exist_ok=True)
    args = []
    for i, p in enumerate(inputs):
        link = links / f"case{i:02d}_{p.name}"
        if not link.exists():
            link.symlink_to(p)
        args.append(str(link))
    wall, rss, code, err = _reap(*_spawn([sys.executable, "-m", "lvp", "infer", *args, "-o", str(out / "cli")], env))
    if code != 0:
        print(f"lvp infer exited {code}: {err.strip()}")
    return wall / len(inputs), rss


def run_single(sample: Path, out: Path, threads: int, repeats: int) -> tuple[list[float], float]:
    """Wall times of one-case ``lvp infer`` child processes (the Slicer module's way); max peak RSS."""
    env = _child_env(threads)
    walls, rss = [], 0.0
    for i in range(repeats):
        wall, peak, code, err = _reap(*_spawn([sys.executable, "-m", "lvp", "infer", str(sample), "-o",
                                               str(out / f"single{i}"), "--progress-json"], env))
        walls.append(wall)
        rss = max(rss, peak)
        if code != 0:
            print(f"lvp infer (single) exited {code}: {err.strip()}")
    return walls, rss


def run_worker(sample: Path, out: Path, threads: int, jobs: int) -> dict:
    """``lvp serve``: seconds to "ready" and the wall time of each job (send to job_done)."""
    env = dict(_child_env(threads), PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "lvp", "serve"], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    walls: list[float] = []
    try:
        ready = json.loads(proc.stdout.readline())
        ready_s = time.perf_counter() - t0
        for i in range(jobs):
            t1 = time.perf_counter()
            proc.stdin.write(json.dumps({"job": i, "args": [str(sample), "-o", str(out / f"worker{i}")]}) + "\n")
            proc.stdin.flush()
            while True:
                line = json.loads(proc.stdout.readline())
                if line.get("event") == "job_done":
                    break
            walls.append(time.perf_counter() - t1)
            if line.get("exit_code") != 0:
                print(f"lvp serve job {i} exited {line.get('exit_code')}: {line.get('error')}")
        proc.stdin.close()
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return {"ready_s": ready_s, "ready_reported_s": ready.get("seconds"), "job_s": walls,
            "first_s": walls[0] if walls else None,
            "median_s": statistics.median(walls) if walls else None}


# Full-FOV variants (voxel type, content in every slice): what a whole scanner field of view looks
# like as LVP's input. 8-bit is how SPIDER's files (and the earlier figures) come; 16-bit is what
# DICOM-derived volumes are (12-bit MR magnitudes stored as int16/uint16), twice the bytes per
# voxel. "filled": the slab repeated (mirrored) across all 280 slices instead of zero padding, so
# the content itself is 294 M voxels: beyond the 1 GB budget, to be refused before the network.
FULL_FOV_VARIANTS = (("uint8", False), ("int16", False), ("int16", True))


def make_full_fov(source: Path, path: Path, size=(1024, 1024, 280), dtype: str = "uint8",
                  filled: bool = False) -> tuple:
    """A full-FOV volume from a SPIDER case: in-plane linear upsampling to ``size[:2]`` over the
    same field of view, the slab centred between zero slices to ``size[2]`` (ITK x, y, z).

    ``dtype`` "uint8" keeps the source's 8-bit voxels (upsampled in 8 bits, as before); "int16"
    upsamples in float and scales the 0-255 intensities to a 12-bit range (x 16, rounded), as a
    DICOM series would hold them. ``filled``: every slice holds a slice of the slab (mirrored at
    each repeat) instead of zero padding.
    """
    import numpy as np
    import SimpleITK as sitk

    src = sitk.ReadImage(str(source))
    nx, ny, nz = src.GetSize()
    spacing = (src.GetSpacing()[0] * nx / size[0], src.GetSpacing()[1] * ny / size[1], src.GetSpacing()[2])
    wide = dtype != "uint8"
    up = sitk.Resample(src, (size[0], size[1], nz), sitk.Transform(), sitk.sitkLinear, src.GetOrigin(), spacing,
                       src.GetDirection(), 0, sitk.sitkFloat32 if wide else src.GetPixelID())
    arr = sitk.GetArrayViewFromImage(up)
    full = np.zeros((size[2], size[1], size[0]), np.dtype(dtype))
    z0 = 0 if filled else (size[2] - nz) // 2
    for k in range(size[2]) if filled else range(z0, z0 + nz):
        j = (k - z0) % (2 * nz)
        j = j if j < nz else 2 * nz - 1 - j
        full[k] = np.rint(arr[j] * 16.0) if wide else arr[j]
    del up, arr
    img = sitk.GetImageFromArray(full)
    del full
    img.SetSpacing(spacing)
    img.SetDirection(src.GetDirection())
    d = np.asarray(src.GetDirection()).reshape(3, 3)
    img.SetOrigin(tuple(np.asarray(src.GetOrigin()) - d[:, 2] * spacing[2] * z0))
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(path))
    writer.UseCompressionOn()
    writer.SetCompressionLevel(1)
    writer.Execute(img)
    return img.GetSize(), np.dtype(dtype).name


def run_full_fov(source: Path, tmp: Path, threads: int, dtype: str = "uint8", filled: bool = False) -> dict:
    """One ``lvp infer`` child on a full-FOV volume made from ``source``: wall time, peak RSS, status.

    A refused input (exit code 2, no report) is reported with the first line of its message.
    """
    name = f"{dtype}{'_filled' if filled else ''}"
    path = tmp / f"full_fov_{name}_t2.nii.gz"
    out = tmp / f"full_fov_{name}_out"
    # Made in a child process: a child's peak RSS (wait4) starts from its parent's RSS at fork,
    # so the parent must not hold the volume it made (the 16-bit ones take ~1.2 GB to make).
    made = subprocess.run([sys.executable, "-c", "import json, sys; sys.path.insert(0, sys.argv[1]); "
                           "from pathlib import Path; from bench_infer import make_full_fov; "
                           "print(json.dumps(make_full_fov(Path(sys.argv[2]), Path(sys.argv[3]), dtype=sys.argv[4], "
                           "filled=sys.argv[5] == '1')))", str(Path(__file__).resolve().parent), str(source), str(path),
                           dtype, "1" if filled else "0"], capture_output=True, text=True, check=True)
    size, dtype = json.loads(made.stdout.strip().splitlines()[-1])
    wall, rss, code, err = _reap(*_spawn([sys.executable, "-m", "lvp", "infer", str(path), "-o",
                                          str(out), "--progress-json"], _child_env(threads)))
    status = None
    report = out / "report.json"
    if report.is_file():
        status = json.loads(report.read_text()).get("status")
    elif code != 0:
        lines = [line for line in err.strip().splitlines() if line.strip()]
        message = lines[-1].split(f"{path}: ", 1)[-1] if lines else "no message"
        status = f"{'refused' if code == 2 else 'failed'} (exit {code}): {message[:500]}"
    path.unlink()
    if code != 0 and report.is_file():
        print(f"lvp infer (full FOV {name}) exited {code}: {err.strip()}")
    return {"size": list(size), "dtype": dtype, "filled": filled, "voxels": int(size[0] * size[1] * size[2]),
            "wall_s": wall, "peak_rss_mib": rss, "exit_code": code, "status": status}


def _load() -> str:
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:  # pragma: no cover - not on every platform
        return "load average n/a"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--inputs", nargs="*", type=Path)
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--single", type=int, default=5, help="one-case CLI calls to time (0: skip)")
    ap.add_argument("--worker", type=int, default=5, help="lvp serve jobs to time (0: skip)")
    ap.add_argument("--no-full-fov", action="store_true", help="skip the 1024x1024x280 full-FOV case")
    ap.add_argument("--no-cli", action="store_true")
    ap.add_argument("--no-nnunet", action="store_true")
    ap.add_argument("--semantic-masks", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    inputs = args.inputs or default_inputs(args.cases)
    results: dict = {"cases": len(inputs), "threads": args.threads, "cpus": os.cpu_count(), "load_start": _load()}
    print(f"{len(inputs)} cases, {args.threads} threads, {os.cpu_count()} CPUs; {results['load_start']}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sample = REPO / "Resources" / "Sample" / "spider_sample_t2.nii.gz"
        if not args.no_cli:
            per_case, rss = run_cli(inputs, tmp, args.threads, args.semantic_masks)
            results["cli_wall_s_per_case"], results["cli_peak_rss_mib"] = per_case, rss
            print(f"lvp infer, {len(inputs)} cases in one call: {per_case:.3f} s per case "
                  f"(wall, incl. start-up and model load); child peak RSS {rss:.0f} MiB")
            if args.single > 0 and not args.semantic_masks:
                walls, rss = run_single(sample, tmp, args.threads, args.single)
                results["single_case_wall_s"] = {"best": min(walls), "median": statistics.median(walls),
                                                 "n": len(walls)}
                results["single_case_peak_rss_mib"] = rss
                print(f"lvp infer, one case per call (bundled sample, --progress-json): best {min(walls):.3f} s, "
                      f"median {statistics.median(walls):.3f} s of {len(walls)} calls (wall, whole process); "
                      f"peak RSS of one such process {rss:.0f} MiB")
            if args.worker > 0 and not args.semantic_masks:
                w = run_worker(sample, tmp, args.threads, args.worker)
                results["worker"] = w
                print(f"lvp serve (warm worker): ready after {w['ready_s']:.3f} s; {len(w['job_s'])} jobs on the "
                      f"bundled sample: first {w['first_s']:.3f} s, median {w['median_s']:.3f} s per job "
                      "(wall, send to job_done)")
            if not args.no_full_fov and not args.semantic_masks:
                results["full_fov"] = {}
                for dtype, filled in FULL_FOV_VARIANTS:
                    f = run_full_fov(inputs[0], tmp, args.threads, dtype, filled)
                    results["full_fov"][f"{dtype}{'_filled' if filled else ''}"] = f
                    content = "content in every slice" if filled else f"slab of {inputs[0].name} in zero padding"
                    shape = "x".join(str(n) for n in f["size"])
                    print(f"full FOV {shape} {f['dtype']} ({f['voxels'] / 1e6:.0f} M voxels, {content}): "
                          f"{f['wall_s']:.2f} s, peak RSS {f['peak_rss_mib']:.0f} MiB, "
                          f"status {f['status']}")

        t_import = time.perf_counter()
        from lvp.io.read import read_volume
        from lvp.pipeline import MaskSegmenter, make_segmenter, run_inference
        results["import_s"] = time.perf_counter() - t_import
        segmenter = None
        if not args.semantic_masks:
            t0 = time.perf_counter()
            segmenter = make_segmenter(args.model, args.device)
            results["load_model_s"] = time.perf_counter() - t0
            results["model"] = dict(segmenter.info)
            print(f"model {results['model'].get('name')} {results['model'].get('version')} "
                  f"({', '.join(results['model'].get('classes') or [])}; sha256 "
                  f"{str(results['model'].get('sha256'))[:12]})")
        stage_times: dict[str, list[float]] = {}
        walls = []
        for i, path in enumerate(inputs):
            seg = segmenter or MaskSegmenter(mask_of(path))
            t0 = time.perf_counter()
            report = run_inference(path, tmp / f"inproc{i}", segmenter=seg)
            walls.append(time.perf_counter() - t0)
            for k, v in report["timings_s"].items():
                stage_times.setdefault(k, []).append(v)
        results["inprocess_wall_s_per_case"] = statistics.median(walls)
        results["stage_median_s"] = {k: statistics.median(v) for k, v in stage_times.items()}
        results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        results["torch_imported_by_lvp"] = "torch" in sys.modules
        print(f"in process (model loaded once): median {results['inprocess_wall_s_per_case']:.3f} s per case; "
              f"peak RSS {results['peak_rss_mib']:.0f} MiB")
        for k, v in results["stage_median_s"].items():
            print(f"  {k:<16} {v:8.3f} s")
        if args.semantic_masks:
            print("  (network replaced by the reference masks: network figures are not the model's)")

        if not args.no_nnunet:
            vol = read_volume(inputs[0])
            nn = run_nnunet_class(vol, args.threads)
            results["nnunet_class"] = nn
            # LVP's counterpart of nnU-Net's prediction: resample + network + back to the input grid.
            lvp_net = sum(results["stage_median_s"].get(k, 0.0) for k in ("preprocess", "network", "restore"))
            results["ratio_nnunet_to_lvp_network"] = nn["seconds"] / max(lvp_net, 1e-9)
            results["ratio_nnunet_to_lvp_case"] = nn["seconds"] / results["inprocess_wall_s_per_case"]
            print(f"nnU-Net-class DynUNet 3d_fullres (patch {nn['patch_size']}, {len(nn['strides'])} stages, "
                  f"{nn['parameters'] / 1e6:.1f} M parameters): {nn['seconds']:.2f} s on {vol.shape}")
            print(f"  ratio to LVP preprocess+network+restore: {results['ratio_nnunet_to_lvp_network']:.1f}x; "
                  f"to a whole LVP case: {results['ratio_nnunet_to_lvp_case']:.1f}x (in process)")
            if results.get("cli_wall_s_per_case"):
                results["ratio_nnunet_to_lvp_batch_case"] = nn["seconds"] / results["cli_wall_s_per_case"]
                print(f"  ratio to a whole LVP case in the {len(inputs)}-case batch (start-up included): "
                      f"{results['ratio_nnunet_to_lvp_batch_case']:.1f}x")
            results["peak_rss_mib_with_nnunet"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["load_end"] = _load()
    print(results["load_end"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
