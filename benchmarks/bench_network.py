"""Network inference speed: ONNX Runtime (2 intra-op threads) vs eager torch, per variant and grid.

Usage: python benchmarks/bench_network.py [--model-dir models] [--repeats 7]
Without a trained model it times untrained variants of the architecture (speed does not depend
on the weights). Prints the median seconds per forward pass.
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
    "lvp-default stem2 [16,32,48,64,96] aniso2": VNetConfig(channels=[16, 32, 48, 64, 96]),
    "stem2 [8,16,32,64,96] aniso2": VNetConfig(),
    "full-res [8,16,32,64,96] aniso2": VNetConfig(stem_stride=False),
    "full-res narrow [8,16,24,48,64] aniso2": VNetConfig(channels=[8, 16, 24, 48, 64], stem_stride=False),
    
    "stem2 isotropic kernels [16,32,48,64,96] aniso0": VNetConfig(channels=[16, 32, 48, 64, 96], anisotropic_levels=0),
}
# SPIDER-sized series (27 x 640 x 512 at 1.0 x 0.47 x 0.47 mm) at candidate working spacings,
# padded to the network divisor.
GRIDS = {"lr1.0 x 1.0 x 1.0 mm": (28, 320, 256), "lr2.0 x 1.0 x 1.0 mm": (16, 320, 256),
         "lr1.0 x 1.25 x 1.25 mm": (28, 256, 192)}


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--torch", action="store_true", help="also time eager torch")
    ap.add_argument("--variants", nargs="*", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name, cfg in VARIANTS.items():
        if args.variants and not any(v in name for v in args.variants):
            continue
        model = build_vnet(cfg).eval()
        sess = _session(model, args.threads)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        for gname, shape in GRIDS.items():
            x = np.random.default_rng(0).standard_normal((1, 1, *shape)).astype(np.float32)
            t_ort = _median(lambda: sess.run(None, {"image": x}), args.repeats)
            line = f"{name:42s} {params:5.2f} M  {gname:24s} {str(shape):16s} ORT {t_ort:6.3f} s"
            if args.torch:
                xt = torch.from_numpy(x)
                with torch.inference_mode():
                    t_pt = _median(lambda: model(xt), max(2, args.repeats // 2))
                line += f"  torch {t_pt:6.3f} s"
            print(line, flush=True)


if __name__ == "__main__":
    main()
