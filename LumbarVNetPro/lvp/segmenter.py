"""Runtime segmentation: canonical Volume -> network classes on the volume's own grid.

CPU inference runs the ONNX export with ONNX Runtime (several times faster than eager torch for
this net); CUDA inference runs the torch weights. Both load through :mod:`lvp.model_catalog`,
which verifies each file's sha256 first.

The CPU path imports neither torch nor the network code: preprocessing and restore are numpy
(:mod:`lvp.preprocess`), and ``device="auto"`` only imports torch when a CUDA driver is present
(importing torch costs about a second of a one-case run).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from lvp.errors import ModelError
from lvp.model_catalog import get_model
from lvp.preprocess import restore, to_network_grid


@dataclass
class SegmentationOutput:
    """Network result on the input volume's canonical grid."""

    semantic: np.ndarray  # uint8: 0 background, 1 vertebra, 2 disc, 3 canal, 4 sacrum (5-class models only)
    probability: np.ndarray  # float32: probability of the chosen class
    timings: dict[str, float] = field(default_factory=dict)


SACRUM = 4  # lvp.labels.SACRUM: the class index of the sacrum in 5-class models


def model_classes(entry: dict) -> dict[int, str]:
    """Class index -> name from a ``models.json`` entry (the 4 classes of 1.0.0 when not listed)."""
    classes = entry.get("classes") or {"0": "background", "1": "vertebra", "2": "disc", "3": "canal"}
    out = {int(k): str(v) for k, v in classes.items()}
    if sorted(out) != list(range(len(out))):
        raise ModelError(f"models.json classes must be numbered 0..n-1, not {sorted(out)}")
    return out


def _default_threads() -> int:
    # Two intra-op threads is the product's target machine; more only helps on big servers.
    return max(1, min(2, os.cpu_count() or 1))


def network_divisor(network: dict) -> tuple[int, int, int]:
    """Input-size multiple of the network (``VNetConfig.divisor`` without importing torch)."""
    n_down = len(network.get("channels", [8, 16, 32, 64, 96])) - 1
    aniso = int(network.get("anisotropic_levels", 2))
    inplane = 2 ** (n_down + int(bool(network.get("stem_stride", True))))
    return (2 ** max(0, n_down - aniso), inplane, inplane)


def _cuda_driver_present() -> bool:
    """Whether a CUDA driver with at least one device exists, asked of the driver (no torch)."""
    if sys.platform == "darwin":
        return False
    names = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so"]
    found = ctypes.util.find_library("cuda")
    if found:
        names.append(found)
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            count = ctypes.c_int(0)
            if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
                return False
            return count.value > 0
        except (AttributeError, OSError):
            return False
    return False


def _cuda_available() -> bool:
    """Whether torch sees a CUDA GPU, asked only when a CUDA driver exists (else no torch import)."""
    if not _cuda_driver_present():
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


class Segmenter:
    """Loads the model once and segments volumes (see module docstring)."""

    def __init__(self, model_dir: str | os.PathLike | None = None, device: str = "auto", threads: int | None = None,
                 restore_mode: str = "linear") -> None:
        if device not in ("auto", "cpu", "cuda"):
            raise ModelError(f"device must be auto, cpu or cuda, not {device!r}")
        if device == "auto":
            device = "cuda" if _cuda_available() else "cpu"
        if device == "cuda" and not _cuda_available():
            raise ModelError("device cuda was asked for but torch sees no CUDA GPU; use --device cpu")
        self.entry = get_model(model_dir)
        self.device = device
        self.restore_mode = restore_mode
        self.spacing = self.entry.input_spacing
        self.divisor = network_divisor(self.entry.network)
        self.threads = threads or _default_threads()
        if device == "cpu":
            self.runtime = "onnxruntime"
            path = self.entry.file("onnx")
            self._session = self._ort_session(path)
        else:
            import torch

            from lvp.network.vnet import VNetConfig, build_vnet

            self.runtime = "torch"
            path = self.entry.file("torch")
            state = torch.load(path, map_location="cpu", weights_only=True)
            self._model = build_vnet(VNetConfig(**self.entry.network))
            self._model.load_state_dict(state["model"])
            self._model = self._model.eval().to("cuda")
        self.sha256 = self.entry.data["files"]["onnx" if device == "cpu" else "torch"]["sha256"]
        self.classes = model_classes(self.entry.data)
        n_out = int(self.entry.network.get("out_channels", len(self.classes)))
        if n_out != len(self.classes):
            raise ModelError(f"model {self.entry.name}: {n_out} output channels but {len(self.classes)} classes "
                             "in models.json")

    @property
    def has_sacrum(self) -> bool:
        """Whether the model segments the sacrum (class 4); older 4-class models do not."""
        return self.classes.get(SACRUM) == "sacrum"

    def _ort_session(self, path):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No busy-waiting between runs: on a 2-core machine spinning ORT threads would steal the
        # cores from the torch/numpy steps (restore, labelling) that follow each network call.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ModelError(f"ONNX Runtime cannot load {path}: {err}") from err

    @property
    def info(self) -> dict:
        """The ``model`` block of report.json."""
        return {"name": self.entry.name, "version": self.entry.version, "sha256": self.sha256,
                "runtime": self.runtime, "device": self.device,
                "classes": [self.classes[k] for k in sorted(self.classes)]}

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Raw network logits ``(1, n_classes, ...)`` for a prepared input ``(1, 1, ...)``."""
        if self.runtime == "onnxruntime":
            return self._session.run(None, {"image": x})[0]
        import torch

        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            return self._model(torch.from_numpy(x).to("cuda")).float().cpu().numpy()

    def segment(self, volume) -> SegmentationOutput:
        """Segment a :class:`lvp.io.volume.Volume`; results lie on ``volume.array``'s grid."""
        t0 = time.perf_counter()
        x, grid = to_network_grid(volume.array, volume.spacing, self.spacing, self.divisor)
        t1 = time.perf_counter()
        logits = self.logits(x)[0]
        t2 = time.perf_counter()
        semantic, prob = restore(logits, grid, mode=self.restore_mode)
        clear_empty_slices(semantic, volume.array)
        t3 = time.perf_counter()
        return SegmentationOutput(semantic, prob, {"preprocess": t1 - t0, "network": t2 - t1, "restore": t3 - t2})


def clear_empty_slices(semantic: np.ndarray, image: np.ndarray) -> int:
    """Set to background every slice (along any axis) whose image is all zero; returns the voxels cleared.

    Zero-filled slices are padding or blanked regions, never anatomy; a network can still put a
    class there (model 1.1.0 put spinal canal into all-zero slices of a padded field of view, which
    stretched the structures' box over the whole volume and made the lumbar-chain check refuse the
    case). Only whole slices are cleared: single zero voxels inside the body (8-bit rescaled
    images have them in dark tissue) are left alone.
    """
    cleared = 0
    for axis in range(image.ndim):
        others = tuple(a for a in range(image.ndim) if a != axis)
        empty = np.flatnonzero(~np.any(image, axis=others))
        if empty.size:
            index = [slice(None)] * image.ndim
            index[axis] = empty
            cleared += int(np.count_nonzero(semantic[tuple(index)]))
            semantic[tuple(index)] = 0
    return cleared
