"""MONAI training transforms (dict-based; keys ``image`` float32 (1, lr, si, ap) in [0, 1], ``label`` uint8).

Besides the geometric and MONAI intensity augmentations, the domain randomisation that makes the
network contrast-agnostic (in the spirit of SynthSeg, Billot et al. 2023, on real images rather
than from labels alone, because the SPIDER labels cover only four structures):

* :class:`RandLabelContrastd`: a random intensity per structure class drawn from the label map
  (each class keeps its own texture, rescaled), mixed with a random non-monotone transfer curve
  of the real image for the unlabelled background; one mode draws T1-like class intensities
  (CSF and disc dark, marrow bright, fat kept bright);
* :class:`RandInvertd`: whole-image inversion (a contrast where every T2 relation is reversed);
* :class:`RandLowResd`: thick-slice / low-resolution simulation: block-average along left-right
  to 3-4 mm (and optionally coarser in-plane), then back to the working grid;
* :class:`RandFovMaskd`: field-of-view cropping inside the patch: a narrower slab and a cut
  superior / inferior / anterior / posterior edge (image and labels zeroed outside), so slab and
  full-FOV series both look familiar.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import (
    Compose,
    MapTransform,
    RandAdjustContrastd,
    RandAffined,
    RandBiasFieldd,
    RandFlipd,
    RandGaussianNoised,
    RandomizableTransform,
    RandScaleIntensityd,
    RandSpatialCropd,
    SpatialPadd,
)

KEYS = ("image", "label")


class _PerKeyd(RandomizableTransform, MapTransform):
    """A random transform drawn once per call (:meth:`randomize`), then applied key by key.

    Subclasses override :meth:`_apply` (and :meth:`randomize` for their own draws); the draws
    happen in the order randomize, then ``_apply`` per key in ``keys`` order.
    """

    def __init__(self, keys: KeysCollection, prob: float) -> None:
        RandomizableTransform.__init__(self, prob)
        MapTransform.__init__(self, keys)

    def _apply(self, arr: torch.Tensor, data: dict) -> torch.Tensor:
        """The transformed value of one key (``data``: the input sample as given, e.g. for its labels)."""
        raise NotImplementedError

    def __call__(self, data: dict) -> dict:
        """Draw, then transform each present key (the input dict is not modified)."""
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = self._apply(torch.as_tensor(d[key]), data)
        return d


class RandSliceThicknessd(_PerKeyd):
    """Simulate thicker sagittal slices: average down along the lr axis by a random factor, then
    interpolate back (clinical sagittal T2 has 3-5 mm slices; SPIDER SPACE has 1 mm).
    """

    def __init__(self, keys: KeysCollection, prob: float = 0.3, max_factor: float = 3.0) -> None:
        super().__init__(keys, prob)
        self.max_factor = max_factor
        self._factor = 1.0

    def randomize(self, data: object = None) -> None:
        """Draw whether to apply and the thickness factor."""
        super().randomize(None)
        self._factor = float(self.R.uniform(1.3, self.max_factor))

    def _apply(self, arr: torch.Tensor, data: dict) -> torch.Tensor:
        """Image keys only (labels stay sharp: the network must still find the true borders)."""
        img = arr.float()
        n = img.shape[1]
        m = max(1, int(round(n / self._factor)))
        flat = img.reshape(img.shape[0], n, -1)[None]  # (1, C, lr, si*ap)
        low = F.interpolate(flat, size=(m, flat.shape[-1]), mode="area")
        back = F.interpolate(low, size=(n, flat.shape[-1]), mode="bilinear", align_corners=False)
        return back[0].reshape(img.shape)


class RandLabelContrastd(_PerKeyd):
    """Random intensity per structure class (from ``label_key``), background by a random curve.

    ``mode`` is drawn per call: ``"random"`` (class means uniform in [0, 1]) with probability
    ``1 - t1_prob``, ``"t1"`` (T1-like ranges: vertebra/sacrum marrow bright, disc and canal dark,
    background nearly unchanged, so fat stays bright) otherwise. Each class keeps its texture: its
    voxels are ``mean_c + spread_c * z`` with ``z`` the class-standardised original intensity.
    The result is mixed with the original by a random weight and clipped to [0, 1].
    """

    T1_RANGES = {1: (0.55, 0.85), 2: (0.15, 0.4), 3: (0.02, 0.2), 4: (0.55, 0.85)}

    def __init__(self, keys: KeysCollection, label_key: str = "label", prob: float = 0.5,
                 t1_prob: float = 0.35, n_knots: int = 5) -> None:
        super().__init__(keys, prob)
        self.label_key = label_key
        self.t1_prob = t1_prob
        self.n_knots = n_knots
        self.mode = "random"

    def randomize(self, data: object = None) -> None:
        """Draw whether to apply and the mode."""
        super().randomize(None)
        self.mode = "t1" if self.R.uniform() < self.t1_prob else "random"

    def _curve(self, x: torch.Tensor, t1: bool) -> torch.Tensor:
        """Random transfer curve of the background: piecewise linear through random knots."""
        xs = torch.linspace(0, 1, self.n_knots)
        if t1:  # nearly the identity (fat bright, muscle dark in T1 and T2 alike), random gamma-ish
            ys = torch.clamp(xs + torch.as_tensor(self.R.uniform(-0.1, 0.1, self.n_knots), dtype=torch.float32), 0, 1)
            ys, _ = torch.sort(ys)
        else:  # any curve, monotone or not (inversions of parts of the range included)
            ys = torch.as_tensor(self.R.uniform(0, 1, self.n_knots), dtype=torch.float32)
        pos = torch.clamp(x, 0, 1) * (self.n_knots - 1)
        i0 = torch.clamp(pos.floor().long(), 0, self.n_knots - 2)
        w = pos - i0
        return ys[i0] * (1 - w) + ys[i0 + 1] * w

    def _apply(self, arr: torch.Tensor, data: dict) -> torch.Tensor:
        """Image keys; the labels (``data[label_key]``) are read, never changed."""
        lab = torch.as_tensor(data[self.label_key])
        t1 = self.mode == "t1"
        img = arr.float()
        out = self._curve(img, t1)
        for c in [int(v) for v in torch.unique(lab) if int(v) > 0]:
            m = lab == c
            vals = img[m]
            lo, hi = self.T1_RANGES.get(c, (0.0, 1.0)) if t1 else (0.0, 1.0)
            mean_c = float(self.R.uniform(lo, hi))
            spread = float(self.R.uniform(0.02, 0.12))
            z = (vals - vals.mean()) / (vals.std() + 1e-6) if vals.numel() > 1 else torch.zeros_like(vals)
            out[m] = mean_c + spread * z
        mix = float(self.R.uniform(0.6, 1.0))
        return torch.clamp(mix * out + (1 - mix) * img, 0, 1)


class RandInvertd(_PerKeyd):
    """Invert the image (``1 - x``): every bright structure becomes dark and vice versa."""

    def __init__(self, keys: KeysCollection, prob: float = 0.15) -> None:
        super().__init__(keys, prob)

    def _apply(self, arr: torch.Tensor, data: dict) -> torch.Tensor:
        """Image keys."""
        return 1.0 - arr.float()


class RandLowResd(_PerKeyd):
    """Thick slices / low resolution: area-average by random factors, then back (labels stay sharp).

    ``lr_mm`` is the simulated slice thickness range in mm on a working grid of ``spacing`` (the
    default 3-4.5 mm on the 2 mm grid: clinical 2-D TSE); in-plane the factor is 1-``max_inplane``.
    """

    def __init__(self, keys: KeysCollection, prob: float = 0.35, spacing=(2.0, 1.0, 1.0),
                 lr_mm: tuple[float, float] = (3.0, 4.5), max_inplane: float = 1.8) -> None:
        super().__init__(keys, prob)
        self.spacing = spacing
        self.lr_mm = lr_mm
        self.max_inplane = max_inplane
        self.factors = (1.0, 1.0, 1.0)

    def randomize(self, data: object = None) -> None:
        """Draw whether to apply and the per-axis factors."""
        super().randomize(None)
        f_lr = float(self.R.uniform(*self.lr_mm)) / self.spacing[0]
        f_ip = float(self.R.uniform(1.0, self.max_inplane))
        self.factors = (max(1.0, f_lr), f_ip, f_ip)

    def _apply(self, arr: torch.Tensor, data: dict) -> torch.Tensor:
        """Image keys."""
        img = arr.float()
        size = img.shape[1:]
        low = tuple(max(1, int(round(n / f))) for n, f in zip(size, self.factors))
        small = F.interpolate(img[None], size=low, mode="area")
        return F.interpolate(small, size=tuple(size), mode="trilinear", align_corners=False)[0]


class RandFovMaskd(_PerKeyd):
    """Zero the image and the labels outside a random box: a narrower slab and/or cut FOV edges."""

    def __init__(self, keys: KeysCollection, prob: float = 0.3, min_fraction=(0.4, 0.6, 0.6)) -> None:
        super().__init__(keys, prob)
        self.min_fraction = min_fraction
        self.box: list[tuple[float, float]] = []

    def randomize(self, data: object = None) -> None:
        """Draw whether to apply and the kept fraction and offset per axis."""
        super().randomize(None)
        self.box = []
        for f_min in self.min_fraction:
            f = float(self.R.uniform(f_min, 1.0))
            start = float(self.R.uniform(0.0, 1.0 - f))
            self.box.append((start, start + f))

    def _apply(self, arr: torch.Tensor, data: dict) -> torch.Tensor:
        """All keys (the labels outside the kept box become background: nothing is seen there)."""
        keep = torch.zeros(arr.shape[1:], dtype=torch.bool)
        sl = tuple(slice(int(a * n), max(int(a * n) + 1, int(round(b * n))))
                   for (a, b), n in zip(self.box, arr.shape[1:]))
        keep[sl] = True
        return torch.where(keep[None], arr, torch.zeros((), dtype=arr.dtype))


def train_transforms(patch: list[int], crop_only: bool = False, contrast: bool = False,
                     spacing=(2.0, 1.0, 1.0)) -> Compose:
    """Crop, geometric and intensity augmentation (incl. left-right flips, contrast, bias field,
    anisotropic slice thickness), in that order. ``contrast=True`` adds the domain randomisation
    (per-class random intensities, inversion, low resolution, FOV masking) of this module.
    """
    t: list = [SpatialPadd(KEYS, spatial_size=patch), RandSpatialCropd(KEYS, roi_size=patch, random_size=False)]
    if not crop_only:
        t += [
            # Rotation in the sagittal plane (about the lr axis) and in-plane scaling.
            RandAffined(KEYS, prob=0.5, rotate_range=(0.25, 0.05, 0.05), scale_range=(0.0, 0.15, 0.15),
                        mode=("bilinear", "nearest"), padding_mode="zeros"),
            RandSliceThicknessd(["image"], prob=0.3),
            RandBiasFieldd(["image"], prob=0.3, coeff_range=(0.0, 0.4)),
            RandAdjustContrastd(["image"], prob=0.3, gamma=(0.6, 1.6)),
            RandScaleIntensityd(["image"], factors=0.2, prob=0.3),
            RandGaussianNoised(["image"], prob=0.2, std=0.03),
        ]
        if contrast:
            # Label-driven contrast first (it reads the class texture), then inversion, resolution,
            # FOV and the generic intensity changes on top.
            t[2:2] = [RandLabelContrastd(["image"], prob=0.55), RandInvertd(["image"], prob=0.1),
                      RandLowResd(["image"], prob=0.35, spacing=tuple(spacing)),
                      RandFovMaskd(list(KEYS), prob=0.25)]
    t.append(RandFlipd(KEYS, prob=0.5, spatial_axis=0))  # left-right
    return Compose(t)


def to_sample(image_u8: np.ndarray, labels: np.ndarray) -> dict:
    """Cache arrays -> a transform input dict."""
    return {"image": (image_u8.astype(np.float32) / 255.0)[None], "label": labels[None].astype(np.uint8)}
