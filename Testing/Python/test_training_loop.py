"""Training: the loss falls on a tiny crop, resume continues, the DDP code path runs (gloo, world 1)."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import yaml

from lvp.errors import ConfigError
from lvp.training.cache import build_cache, load_cache
from lvp.training.config import TrainConfig
from lvp.training.loop import train
from lvp.training.transforms import RandSliceThicknessd, train_transforms


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory, sample_case):
    """The bundled sample case, cached at 2 mm (a few hundred kB)."""
    root = tmp_path_factory.mktemp("data")
    (root / "case1_t2.nii.gz").symlink_to(sample_case)
    (root / "case1_labels.nii.gz").symlink_to(sample_case.with_name("spider_sample_labels.nii.gz"))
    cache = root / "cache.npz"
    build_cache([root], cache, (2.0, 2.0, 2.0))
    return cache


def _cfg(tmp_path, cache, **kw) -> TrainConfig:
    d = dict(cache=str(cache), cache_spacing=[2.0, 2.0, 2.0], spacing=[2.0, 2.0, 2.0], validation=[],
             network={"channels": [4, 8, 8, 16, 16], "convs": [1, 1, 1, 1, 1]}, patch=[8, 96, 96],
             batch_size=1, samples_per_epoch=3, epochs=2, lr=0.01, workers=0, crop_only=True,
             out_dir=str(tmp_path / "run"), amp=False)
    d.update(kw)
    return TrainConfig.from_dict(d)


def test_cache_holds_normalised_case(tiny_cache):
    meta, cases = load_cache(tiny_cache)
    img, lab = cases["case1"]
    assert meta["spacing"] == [2.0, 2.0, 2.0]
    assert img.dtype == np.uint8 and img.shape == lab.shape
    assert img.max() == 255 and set(np.unique(lab)) == {0, 1, 2, 3}


def test_two_epochs_loss_falls_and_resume(tmp_path, tiny_cache):
    cfg = _cfg(tmp_path, tiny_cache)
    out = train(cfg, progress=False)
    losses = [h["loss"] for h in out["history"]]
    assert len(losses) == 2 and losses[1] < losses[0]
    log_lines = (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in log_lines] == [1, 2]
    # Resume: a third epoch continues from the checkpoint instead of starting over.
    out3 = train(_cfg(tmp_path, tiny_cache, epochs=3), resume=True, progress=False)
    assert [h["epoch"] for h in out3["history"]] == [1, 2, 3]
    assert out3["history"][:2] == out["history"]


def test_seeded_runs_repeat(tmp_path, tiny_cache):
    a = train(_cfg(tmp_path / "a", tiny_cache, epochs=1), progress=False)["history"][0]["loss"]
    b = train(_cfg(tmp_path / "b", tiny_cache, epochs=1), progress=False)["history"][0]["loss"]
    assert a == pytest.approx(b, rel=1e-5)


def test_distributed_path_world_size_one(tmp_path, tiny_cache, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for k, v in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "LOCAL_RANK": "0",
                 "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(k, v)
    out = train(_cfg(tmp_path, tiny_cache, epochs=1), distributed=True, progress=False)
    assert np.isfinite(out["history"][0]["loss"]) and out["weights"].exists()


def test_config_yaml_and_unknown_keys(tmp_path, repo_root):
    cfg = TrainConfig.from_yaml(repo_root / "configs" / "train_lvp_vnet.yaml")
    assert "spider50" in cfg.validation  # the bundled sample must never be trained on
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"epochz": 3}))
    with pytest.raises(ConfigError):
        TrainConfig.from_yaml(bad)


def test_augmentations_keep_shapes_and_labels():
    rng = np.random.default_rng(0)
    sample = {"image": rng.random((1, 10, 64, 48)).astype(np.float32),
              "label": rng.integers(0, 4, (1, 10, 64, 48)).astype(np.uint8)}
    tr = train_transforms([8, 64, 48])
    tr.set_random_state(1)
    for _ in range(3):
        out = tr(sample)
        assert tuple(out["image"].shape) == (1, 8, 64, 48) and tuple(out["label"].shape) == (1, 8, 64, 48)
        assert set(np.unique(np.asarray(out["label"]))) <= {0, 1, 2, 3}
    thick = RandSliceThicknessd(["image"], prob=1.0, max_factor=3.0)
    thick.set_random_state(0)
    smoothed = np.asarray(thick(sample)["image"])
    # Thick slices blur across lr: neighbouring slices become more alike.
    assert np.abs(np.diff(smoothed, axis=1)).mean() < np.abs(np.diff(sample["image"], axis=1)).mean()


def test_init_weights_starts_from_a_finished_run(tmp_path, tiny_cache):
    import torch

    first = train(_cfg(tmp_path / "a", tiny_cache, epochs=3), progress=False)
    weights = torch.load(first["weights"], weights_only=False)["model"]
    # lr=0 keeps the weights where they start: the continued run must hold the first run's weights.
    cont = train(_cfg(tmp_path / "b", tiny_cache, epochs=1, lr=0.0, init_weights=str(first["weights"])),
                 progress=False)
    got = torch.load(cont["weights"], weights_only=False)["model"]
    # Parameters only: normalisation running statistics move in train mode even at lr=0.
    params = [k for k in weights if "running_" not in k and "num_batches" not in k]
    assert params and all(torch.equal(weights[k], got[k]) for k in params)
    scratch = train(_cfg(tmp_path / "c", tiny_cache, epochs=1, lr=0.0), progress=False)
    fresh = torch.load(scratch["weights"], weights_only=False)["model"]
    assert not all(torch.equal(weights[k], fresh[k]) for k in params)


def test_a_cache_built_without_the_derived_sacrum_is_refused_for_a_sacrum_config(tmp_path, tiny_cache):
    from lvp.training.loop import load_training_data

    train_cases, _ = load_training_data(_cfg(tmp_path, tiny_cache))
    assert set(train_cases) == {"case1"}
    with pytest.raises(ValueError, match="derived_labels"):
        load_training_data(_cfg(tmp_path, tiny_cache, derived_labels=str(tmp_path / "labels5")))
