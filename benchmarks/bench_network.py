"""Network inference speed on 2 CPU threads.

Usage:
  python benchmarks/bench_network.py --shipped        # the shipped model, SPIDER-sized series
  python benchmarks/bench_network.py [--torch]        # architecture variants x working grids

``--shipped`` times :class:`lvp.segmenter.NetworkSegmenter` (preprocess / network / restore, median of
``--repeats``) on a SPIDER-sized series (27 x 640 x 512 at 1.0 x 0.47 x 0.47 mm, the bundled
sample's slices tiled to 27) and eager torch on the same network input. The variants mode times
untrained variants (speed does not depend on the weights). Prints medians in seconds.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np
import onnxruntime as ort
import torch

from lvp.network import VNetConfig, build_vnet

VARIANTS = {
    "shipped: stem2 [8,16,32,64,96] aniso2": VNetConfig(),
    "stem2 wide [16,32,48,64,96] aniso2": VNetConfig(channels=[16, 32, 48, 64, 96]),
    "full-res [8,16,32,64,96] aniso2": VNetConfig(stem_stride=False),
    "full-res narrow [8,16,24,48,64] aniso2": VNetConfig(channels=[8, 16, 24, 48, 64], stem_stride=False),

    "stem2 isotropic kernels [16,32,48,64,96] aniso0": VNetConfig(channels=[16, 32, 48, 64, 96], anisotropic_levels=0),
}
# SPIDER-sized series (27 x 640 x 512 at 1.0 x 0.47 x 0.47 mm) at candidate working spacings
# (padded to each variant's divisor before timing).
GRIDS = {"lr1.0 x 1.0 x 1.0 mm": (27, 300, 240), "lr2.0 x 1.0 x 1.0 mm": (14, 300, 240),
         "lr1.0 x 1.25 x 1.25 mm": (27, 240, 192)}


def _session(model: torch.nn.Module, threads: int) -> ort.InferenceSession:
    buf = io.BytesIO()
    x = torch.zeros(1, 1, 16, 64, 64)
    torch.onnx.export(model, x, buf, input_names=["image"], output_names=["logits"], dynamo=False,
                      dynamic_axes={"image": {2: "lr", 3: "si", 4: "ap"}}, opset_version=17)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])


def _median(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_shipped(repeats: int, threads: int, model_dir: str | None = None) -> None:
    """Time the shipped model through the runtime API."""
    from pathlib import Path

    import SimpleITK as sitk

    from lvp.io.volume import canonical_volume
    from lvp.network.export import load_weights
    from lvp.segmenter import NetworkSegmenter

    sample = Path(__file__).resolve().parents[1] / "Resources" / "Sample" / "spider_sample_t2.nii.gz"
    img = sitk.ReadImage(str(sample))
    vol = canonical_volume(img)
    reps = int(np.ceil(27 / vol.shape[0]))
    vol.array = np.ascontiguousarray(np.concatenate([vol.array] * reps, axis=0)[:27])
    seg = NetworkSegmenter(model_dir, device="cpu", threads=threads)
    seg.segment(vol)
    runs = [seg.segment(vol).timings for _ in range(repeats)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    total = statistics.median(sum(r.values()) for r in runs)
    print(f"shipped {seg.info['name']} {seg.info['version']} on {vol.shape} {tuple(round(s, 3) for s in vol.spacing)}"
          f" mm, {threads} threads, median of {repeats}:")
    print("  " + "  ".join(f"{k} {v:.3f} s" for k, v in med.items()) + f"  total {total:.3f} s")
    from lvp.preprocess import to_network_grid

    x, _ = to_network_grid(vol.array, vol.spacing, seg.spacing, seg.divisor)
    model, _ = load_weights(seg.entry.file("torch"))
    xt = torch.from_numpy(x)
    with torch.inference_mode():
        t_pt = _median(lambda: model(xt), max(3, repeats // 2))
    t_ort = _median(lambda: seg.logits(x), repeats)
    print(f"  network input {x.shape[2:]}: onnxruntime {t_ort:.3f} s, eager torch {t_pt:.3f} s "
          f"({t_pt / t_ort:.1f}x)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shipped", action="store_true", help="time the shipped model (see module docstring)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--torch", action="store_true", help="also time eager torch")
    ap.add_argument("--variants", nargs="*", default=None)
    ap.add_argument("--model", default=None, help="--shipped: model folder (default: the shipped models/)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.shipped:
        bench_shipped(args.repeats, args.threads, args.model)
        return
    for name, cfg in VARIANTS.items():
        if args.variants and not any(v in name for v in args.variants):
            continue
        model = build_vnet(cfg).eval()
        sess = _session(model, args.threads)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        for gname, shape in GRIDS.items():
            shape = tuple(int(np.ceil(n / d) * d) for n, d in zip(shape, cfg.divisor))
            x = np.random.default_rng(0).standard_normal((1, 1, *shape)).astype(np.float32)
            t_ort = _median(lambda s=sess, x=x: s.run(None, {"image": x}), args.repeats)
            line = f"{name:42s} {params:5.2f} M  {gname:24s} {str(shape):16s} ORT {t_ort:6.3f} s"
            if args.torch:
                xt = torch.from_numpy(x)
                with torch.inference_mode():
                    t_pt = _median(lambda m=model, xt=xt: m(xt), max(2, args.repeats // 2))
                line += f"  torch {t_pt:6.3f} s"
            print(line, flush=True)


if __name__ == "__main__":
    main()
