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
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from lvp.errors import InputError, ModelError
from lvp.io.read import read_volume
from lvp.io.validate import check_working_memory
from lvp.io.volume import Volume
from lvp.labels import SACRUM, semantic_classes
from lvp.model_catalog import get_model
from lvp.preprocess import PlacedProbability, grid_shape_for, restore, to_network_grid

# ONNX Runtime hands its memory arena back after a run when the network grid exceeds this many
# voxels (a large grid's arena is hundreds of MB) or the image exceeds ARENA_SHRINK_IMAGE_BYTES
# (then every MB counts through the stages that follow). A SPIDER case (grid ~1.3 M voxels, image
# ~8 MB) keeps its arena for the next case.
ARENA_SHRINK_VOXELS = 4_000_000
ARENA_SHRINK_IMAGE_BYTES = 100_000_000
# The network sees the image without the all-zero slices at its edges (padding) when they make at
# least this fraction of an axis. A few empty rows are common (SPIDER's slabs have 0-7 of 512-640)
# and cost nothing worth saving; cropping them would move the network grid of ordinary inputs.
CROP_MIN_FRACTION = 0.1


@dataclass
class SegmentationResult:
    """What every segmenter returns, on the input volume's canonical grid."""

    semantic: np.ndarray  # uint8: 0 background, 1 vertebra, 2 disc, 3 canal, 4 sacrum (5-class models only)
    probability: np.ndarray | None = None  # float32: probability of the chosen class (the network only)
    timings: dict[str, float] = field(default_factory=dict)
    # A TotalSpineSeg label map (same grid) whose level names are kept as they are: the labelling
    # stage builds the levels from it (lvp.labelling.from_labels) instead of numbering them.
    labels: np.ndarray | None = None
    # Label value -> confidence to keep for levels given by ``labels`` (others get 1.0).
    label_confidence: dict[int, float] | None = None


class Segmenter(Protocol):
    """What ``lvp infer`` needs of a segmenter (the network, a semantic mask or a label map)."""

    @property
    def info(self) -> dict:
        """The ``model`` block of report.json."""
        ...

    @property
    def sacrum_class(self) -> bool | None:
        """Whether the classes include the sacrum; None when unknown (the labelling then decides)."""
        ...

    def segment(self, volume: Volume) -> SegmentationResult:
        """Segment ``volume``; the arrays lie on ``volume.array``'s grid."""
        ...


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


class NetworkSegmenter:
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

    @property
    def sacrum_class(self) -> bool | None:
        """Whether models.json lists a sacrum class; None when it lists no classes at all."""
        classes = self.entry.data.get("classes")
        return None if classes is None else "sacrum" in {str(v) for v in classes.values()}

    def _ort_session(self, path):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No busy-waiting between runs: on a 2-core machine spinning ORT threads would steal the
        # cores from the torch/numpy steps (restore, labelling) that follow each network call.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # No pre-planned block for every activation of the largest input seen: the same speed,
        # about half the network's peak on a large grid (measured, docs/performance.md "Memory").
        opts.enable_mem_pattern = False
        try:
            return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise ModelError(f"ONNX Runtime cannot load {path}: {err}") from err

    @property
    def info(self) -> dict:
        """The ``model`` block of report.json."""
        return {"name": self.entry.name, "version": self.entry.version, "sha256": self.sha256,
                "runtime": self.runtime, "device": self.device,
                "classes": [self.classes[k] for k in sorted(self.classes)]}

    def logits(self, x: np.ndarray, release: bool = False) -> np.ndarray:
        """Raw network logits ``(1, n_classes, ...)`` for a prepared input ``(1, 1, ...)``.

        ``release``: hand ONNX Runtime's memory arena back after the run (always for a large grid).
        """
        if self.runtime == "onnxruntime":
            run = None
            if release or x.size > ARENA_SHRINK_VOXELS:
                import onnxruntime as ort

                run = ort.RunOptions()
                run.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
            return self._session.run(None, {"image": x}, run)[0]
        import torch

        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            return self._model(torch.from_numpy(x).to("cuda")).float().cpu().numpy()

    def grid_voxels(self, shape: tuple[int, ...], spacing: tuple[float, ...]) -> int:
        """Voxels of the (padded) network grid an image of ``shape`` and ``spacing`` is resampled to."""
        grid = grid_shape_for(shape, spacing, self.spacing)
        return int(np.prod([-(-n // d) * d for n, d in zip(grid, self.divisor)], dtype=np.int64))

    def segment(self, volume: Volume) -> SegmentationResult:
        """Segment a :class:`lvp.io.volume.Volume`; results lie on ``volume.array``'s grid.

        The network sees the image's occupied box only: slices (along any axis) that are all
        zero at the edges of the volume are padding, never anatomy (:func:`clear_empty_slices`
        sets them to background anyway), so a padded field of view costs the network, restore and
        their memory what its content costs (:data:`CROP_MIN_FRACTION`: margins of a few slices
        are kept). The intensity normalisation is then taken from the content, not from how much
        padding surrounds it. An input whose case would exceed the memory budget is refused first
        (:func:`lvp.io.validate.check_working_memory`).
        """
        t0 = time.perf_counter()
        occupied = occupied_slices(volume.array)
        box = occupied_box(occupied)
        whole = all(s.start == 0 and s.stop == n for s, n in zip(box, volume.shape))
        image = volume.array if whole else volume.array[box]
        if self.runtime == "onnxruntime":  # on CUDA the network's memory is the GPU's
            check_working_memory(volume.array.nbytes, image.size, self.grid_voxels(image.shape, volume.spacing),
                                 tuple(n * s for n, s in zip(image.shape, volume.spacing)),
                                 dicom_output=volume.meta.get("dicom_outputs", volume.meta.get("format") == "dicom"),
                                 dicom_input=volume.meta.get("format") == "dicom")
        x, grid = to_network_grid(image, volume.spacing, self.spacing, self.divisor)
        t1 = time.perf_counter()
        logits = self.logits(x, release=volume.array.nbytes > ARENA_SHRINK_IMAGE_BYTES)[0]
        del x
        t2 = time.perf_counter()
        # The classes go straight into the whole grid's array: np.zeros takes its pages from the
        # kernel as they are written, so the padding (and the background of the content's box
        # outside the structures) costs no memory until someone writes there.
        semantic = np.zeros(volume.shape, np.uint8)
        _, prob = restore(logits, grid, mode=self.restore_mode, out=semantic if whole else semantic[box])
        del logits
        clear_empty_slices(semantic[box], image, [o[s] for o, s in zip(occupied, box)])
        if not whole:
            prob = PlacedProbability(prob, box, volume.shape)
        t3 = time.perf_counter()
        return SegmentationResult(semantic, prob, {"preprocess": t1 - t0, "network": t2 - t1, "restore": t3 - t2})


def occupied_slices(image: np.ndarray) -> list[np.ndarray]:
    """Per axis, whether each slice of ``image`` holds a non-zero voxel (one boolean array per axis)."""
    return [np.any(image, axis=tuple(a for a in range(image.ndim) if a != axis)) for axis in range(image.ndim)]


def occupied_box(occupied: list[np.ndarray], min_fraction: float = CROP_MIN_FRACTION) -> tuple[slice, ...]:
    """The box from the first to the last occupied slice along each axis.

    An axis is cropped only when its empty edge slices make at least ``min_fraction`` of it
    (else, and when no slice is occupied, the whole axis is kept).
    """
    box = []
    for occ in occupied:
        hit = np.flatnonzero(occ)
        if hit.size and occ.size - (int(hit[-1]) + 1 - int(hit[0])) >= min_fraction * occ.size:
            box.append(slice(int(hit[0]), int(hit[-1]) + 1))
        else:
            box.append(slice(0, occ.size))
    return tuple(box)


def clear_empty_slices(semantic: np.ndarray, image: np.ndarray, occupied: list[np.ndarray] | None = None) -> int:
    """Set to background every slice (along any axis) whose image is all zero; returns the voxels cleared.

    Zero-filled slices are padding or blanked regions, never anatomy; a network can still put a
    class there (model 1.1.0 put spinal canal into all-zero slices of a padded field of view, which
    stretched the structures' box over the whole volume and made the lumbar-chain check refuse the
    case). Only whole slices are cleared: single zero voxels inside the body (8-bit rescaled
    images have them in dark tissue) are left alone. ``occupied``: :func:`occupied_slices` of
    ``image`` when the caller has it already.
    """
    if occupied is None:
        occupied = occupied_slices(image)
    cleared = 0
    for axis, occ in enumerate(occupied):
        empty = np.flatnonzero(~occ)
        if empty.size:
            index = [slice(None)] * image.ndim
            index[axis] = empty
            cleared += int(np.count_nonzero(semantic[tuple(index)]))
            semantic[tuple(index)] = 0
    return cleared


# Segmenters that read an existing segmentation instead of running the network.
def _read_on_grid(path: Path, volume: Volume, what: str) -> np.ndarray:
    """The array of the image at ``path``, refused unless it lies on ``volume``'s voxel grid."""
    image = read_volume(path, validate=False, require_sagittal=False)
    if image.shape != volume.shape or not np.allclose(image.affine, volume.affine, atol=1e-3):
        raise InputError(f"{path}: the {what} is not on the image's voxel grid "
                         f"({what} {image.shape}, image {volume.shape})")
    return image.array


def _read_label_map(path: Path, volume: Volume, what: str) -> np.ndarray:
    labels = _read_on_grid(path, volume, what)
    # Integer maps as they are (np.rint would make a full-size float copy first); float maps rounded.
    return labels.astype(np.int16, copy=False) if labels.dtype.kind in "iub" else np.rint(labels).astype(np.int16)


class MaskSegmenter:
    """A "segmenter" that returns an existing semantic mask (classes 1 vertebra, 2 disc, 3 canal).

    For re-running the level labelling, measurements and grades on a corrected segmentation
    (``lvp infer --semantic MASK``) and for exercising the pipeline without a model.
    """

    def __init__(self, mask_path: str | Path):
        self.mask_path = Path(mask_path)
        self.info = {"name": "semantic-mask", "version": "n/a", "sha256": None, "runtime": "none",
                     "device": "cpu", "mask": str(self.mask_path)}
        self.sacrum_class: bool | None = None  # classes as the mask holds them

    def segment(self, volume: Volume) -> SegmentationResult:
        """Read the mask and check it lies on the volume's grid."""
        t0 = time.perf_counter()
        semantic = _read_on_grid(self.mask_path, volume, "semantic mask").astype(np.uint8, copy=False)
        if semantic.max(initial=0) > SACRUM:
            raise InputError(f"{self.mask_path}: a semantic mask holds only 0 background, 1 vertebra, 2 disc, "
                             f"3 canal and 4 sacrum; it has value {int(semantic.max())}")
        return SegmentationResult(semantic, None, {"network": time.perf_counter() - t0})


class LabelMapSegmenter:
    """A "segmenter" returning a TotalSpineSeg label map whose level names are kept as given.

    For recomputing after a reader's edits (``lvp infer IMAGE --labels LABELMAP``): no network and
    no level labelling; measurements, grades and scan planes are made from the map as it is.
    ``previous`` (an earlier ``lvp infer`` output folder of the same image) lets levels whose
    voxels are unchanged keep their earlier confidence; edited, renamed or new levels get 1.0.
    """

    def __init__(self, labels_path: str | Path, previous: str | Path | None = None):
        self.labels_path = Path(labels_path)
        self.previous = Path(previous) if previous else None
        self.info = {"name": "label-map", "version": "n/a", "sha256": None, "runtime": "none",
                     "device": "cpu", "labels": str(self.labels_path)}
        self.sacrum_class: bool | None = None  # the levels are given: no labelling runs

    def segment(self, volume: Volume) -> SegmentationResult:
        """Read the label map, check its grid and values; derive the semantic classes."""
        from lvp.labelling.from_labels import check_label_values, unchanged_confidences
        from lvp.report.build import REPORT_JSON, SEGMENTATION

        t0 = time.perf_counter()
        labels = _read_label_map(self.labels_path, volume, "label map")
        check_label_values(labels, str(self.labels_path))
        semantic = semantic_classes(labels)
        kept: dict[int, float] = {}
        if self.previous is not None:
            prev_report = json.loads((self.previous / REPORT_JSON).read_text())
            seg_name = (prev_report.get("outputs") or {}).get("segmentation") or SEGMENTATION
            previous = _read_label_map(self.previous / seg_name, volume, "earlier segmentation")
            conf = {int(s["label"]): s.get("confidence") for s in prev_report.get("structures", [])}
            kept = unchanged_confidences(labels, previous, conf)
        return SegmentationResult(semantic, None, {"network": time.perf_counter() - t0}, labels=labels,
                              label_confidence=kept)
