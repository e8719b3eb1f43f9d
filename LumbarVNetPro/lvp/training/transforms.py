"""MONAI training transforms (dict-based; keys ``image`` float32 (1, lr, si, ap) in [0, 1], ``label`` uint8)."""

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


class RandSliceThicknessd(RandomizableTransform, MapTransform):
    """Simulate thicker sagittal slices: average down along the lr axis by a random factor, then
    interpolate back (clinical sagittal T2 has 3-5 mm slices; SPIDER SPACE has 1 mm).
    """

    def __init__(self, keys: KeysCollection, prob: float = 0.3, max_factor: float = 3.0) -> None:
        RandomizableTransform.__init__(self, prob)
        MapTransform.__init__(self, keys)
        self.max_factor = max_factor
        self._factor = 1.0

    def randomize(self, data: object = None) -> None:
        """Draw whether to apply and the thickness factor."""
        super().randomize(None)
        self._factor = float(self.R.uniform(1.3, self.max_factor))

    def __call__(self, data: dict) -> dict:
        """Apply to the image keys (labels stay sharp: the network must still find the true borders)."""
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            img = torch.as_tensor(d[key]).float()
            n = img.shape[1]
            m = max(1, int(round(n / self._factor)))
            flat = img.reshape(img.shape[0], n, -1)[None]  # (1, C, lr, si*ap)
            low = F.interpolate(flat, size=(m, flat.shape[-1]), mode="area")
            back = F.interpolate(low, size=(n, flat.shape[-1]), mode="bilinear", align_corners=False)
            d[key] = back[0].reshape(img.shape)
        return d


def train_transforms(patch: list[int], crop_only: bool = False) -> Compose:
    """Crop, geometric and intensity augmentation (incl. left-right flips, contrast, bias field,
    anisotropic slice thickness), in that order.
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
    t.append(RandFlipd(KEYS, prob=0.5, spatial_axis=0))  # left-right
    return Compose(t)


def to_sample(image_u8: np.ndarray, labels: np.ndarray) -> dict:
    """Cache arrays -> a transform input dict."""
    return {"image": (image_u8.astype(np.float32) / 255.0)[None], "label": labels[None].astype(np.uint8)}
