"""Domain randomisation transforms: the statistics they promise, measured over many draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lvp.training.transforms import (
    RandFovMaskd,
    RandInvertd,
    RandLabelContrastd,
    RandLowResd,
    train_transforms,
)


def _sample(shape=(8, 64, 48)) -> dict:
    """T2-like toy patch: canal bright, disc bright, bone mid, background textured."""
    rng = np.random.default_rng(0)
    lab = np.zeros(shape, np.uint8)
    lab[:, 8:24, 5:25] = 1
    lab[:, 24:30, 5:25] = 2
    lab[:, 30:50, 5:25] = 4
    lab[:, 5:60, 30:38] = 3
    img = rng.uniform(0.0, 0.4, shape).astype(np.float32)
    for c, v in {1: 0.5, 2: 0.85, 3: 0.9, 4: 0.5}.items():
        m = lab == c
        img[m] = v + rng.normal(0, 0.03, m.sum())
    return {"image": img[None], "label": lab[None]}


def _class_mean(d: dict, c: int) -> float:
    img, lab = torch.as_tensor(d["image"]), torch.as_tensor(d["label"])
    return float(img[lab == c].mean())


def test_label_contrast_randomises_each_class_and_keeps_texture():
    s = _sample()
    t = RandLabelContrastd(["image"], prob=1.0, t1_prob=0.0)
    t.set_random_state(3)
    means = {c: [] for c in (1, 2, 3)}
    for _ in range(40):
        out = t(s)
        for c in means:
            means[c].append(_class_mean(out, c))
        assert out["image"].min() >= 0 and out["image"].max() <= 1
        assert np.array_equal(np.asarray(out["label"]), s["label"])  # labels untouched
    for c, v in means.items():
        assert np.std(v) > 0.12, f"class {c} intensity barely varies"
    # Disc darker than bone (the reverse of the input) in a fair share of the draws, not never.
    flipped = np.mean(np.asarray(means[2]) < np.asarray(means[1]))
    assert 0.2 < flipped < 0.8
    # Texture: within a class the output is a linear function of the input (before clipping).
    out = t(s)
    m = s["label"][0] == 2
    r = np.corrcoef(s["image"][0][m], np.asarray(out["image"])[0][m])[0, 1]
    assert abs(r) > 0.9


def test_t1_mode_reverses_the_csf_bone_contrast_every_time():
    s = _sample()
    assert _class_mean(s, 3) > _class_mean(s, 1)  # T2 input: CSF brighter than marrow
    t = RandLabelContrastd(["image"], prob=1.0, t1_prob=1.0)
    t.set_random_state(5)
    for _ in range(40):
        out = t(s)
        assert _class_mean(out, 3) < _class_mean(out, 1)  # T1-like: CSF dark, marrow bright
        assert _class_mean(out, 3) < _class_mean(out, 4)


def test_invert_and_probability():
    s = _sample()
    out = RandInvertd(["image"], prob=1.0)(s)
    assert torch.allclose(torch.as_tensor(out["image"]), 1 - torch.as_tensor(s["image"]))
    t = RandInvertd(["image"], prob=0.3)
    t.set_random_state(1)
    n = sum(not torch.allclose(torch.as_tensor(t(s)["image"]), torch.as_tensor(s["image"])) for _ in range(200))
    assert 40 <= n <= 80  # about 30 % of 200


def test_low_resolution_blurs_across_slices_and_keeps_the_mean():
    shape = (16, 32, 32)
    img = np.zeros(shape, np.float32)
    img[::2] = 1.0  # alternating sagittal slices: the finest left-right detail
    s = {"image": img[None], "label": np.zeros((1, *shape), np.uint8)}
    t = RandLowResd(["image"], prob=1.0, spacing=(2.0, 1.0, 1.0), lr_mm=(4.0, 4.0), max_inplane=1.0)
    out = np.asarray(t(s)["image"])[0]
    assert out.mean() == pytest.approx(img.mean(), abs=0.02)
    assert out.std(axis=0).mean() < 0.25 * img.std(axis=0).mean()


def test_fov_mask_cuts_image_and_labels_together():
    s = _sample()
    s["image"] = s["image"] + 0.01  # no zeros before masking
    t = RandFovMaskd(["image", "label"], prob=1.0, min_fraction=(0.5, 0.5, 0.5))
    t.set_random_state(2)
    kept = []
    for _ in range(20):
        out = t(s)
        img, lab = np.asarray(out["image"])[0], np.asarray(out["label"])[0]
        inside = img > 0
        assert (lab[~inside] == 0).all() and (lab[inside] == s["label"][0][inside]).all()
        kept.append(inside.mean())
    assert min(kept) >= 0.5 ** 3 - 0.02 and max(kept) < 1.0 and np.std(kept) > 0.05


def test_pipeline_with_contrast_varies_disc_intensity_more():
    s = _sample((16, 96, 64))
    spread = {}
    for contrast in (False, True):
        tr = train_transforms([8, 64, 48], contrast=contrast)
        tr.set_random_state(11)
        vals = []
        for _ in range(30):
            out = tr(s)
            lab = torch.as_tensor(out["label"])
            assert set(torch.unique(lab).tolist()) <= {0, 1, 2, 3, 4}
            if (lab == 2).sum() > 20:
                vals.append(_class_mean(out, 2))
        spread[contrast] = np.std(vals)
    assert spread[True] > 2 * spread[False]


@pytest.mark.parametrize("make", [
    lambda: RandLabelContrastd(["image"], prob=1.0),
    lambda: RandInvertd(["image"], prob=1.0),
    lambda: RandLowResd(["image"], prob=1.0),
    lambda: RandFovMaskd(["image", "label"], prob=1.0),
])
def test_per_key_transforms_repeat_under_a_seed_and_leave_the_input_alone(make):
    """The shared draw-then-apply-per-key mechanism: same seed, same output; the input is untouched."""
    s = _sample()
    before = {k: np.array(v, copy=True) for k, v in s.items()}
    a, b = make(), make()
    a.set_random_state(4)
    b.set_random_state(4)
    out_a, out_b = a(s), b(s)
    for k in s:
        assert np.array_equal(np.asarray(s[k]), before[k])  # the caller's arrays are not written
        assert torch.equal(torch.as_tensor(out_a[k]), torch.as_tensor(out_b[k]))
    assert not torch.equal(torch.as_tensor(out_a["image"]).float(), torch.as_tensor(before["image"]))

