"""The shipped model: sha256 verification, model folder resolution, runtime output contract."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from lvp.datasets import harmonise
from lvp.errors import ModelError
from lvp.evaluation import dice
from lvp.io.volume import canonical_volume
from lvp.model_catalog import MODEL_ENV, get_model, resolve_model_dir, sha256_of
from lvp.segmenter import NetworkSegmenter


@pytest.fixture(scope="module")
def sample_volume(sample_case):
    img = sitk.ReadImage(str(sample_case))
    vol = canonical_volume(img)
    vol.array = np.array(vol.array, copy=True)
    lab = sitk.ReadImage(str(sample_case.with_name("spider_sample_labels.nii.gz")))
    return vol, harmonise(np.array(canonical_volume(lab).array, copy=True), "lvp3")


@pytest.fixture(scope="module")
def segmenter():
    return NetworkSegmenter(device="cpu")


def test_catalog_entry_is_complete(repo_root):
    entry = get_model(repo_root / "models")
    assert entry.name == "lvp-vnet" and len(entry.input_spacing) == 3
    for kind in ("onnx", "torch"):
        path = entry.file(kind)
        assert sha256_of(path) == entry.data["files"][kind]["sha256"]
    total = sum(p.stat().st_size for p in (repo_root / "models").iterdir() if p.suffix in (".onnx", ".pt"))
    assert total <= 20 * 1024 * 1024
    assert "spider50" in entry.data["training"]["validation_cases"]
    assert "spider50" not in entry.data["training"]["train_cases"]


def test_segment_sample_contract(segmenter, sample_volume):
    vol, ref = sample_volume
    out = segmenter.segment(vol)
    assert out.semantic.shape == vol.shape and out.semantic.dtype == np.uint8
    assert out.probability.shape == vol.shape and out.probability.dtype == np.float32
    values = set(np.unique(out.semantic).tolist())
    assert values <= set(range(len(segmenter.classes)))
    # A sacrum model finds the sacrum on the held-out sample (spider50: its S1 is in the slab).
    assert (4 in values) == segmenter.has_sacrum
    assert 0.25 <= float(out.probability.min()) and float(out.probability.max()) <= 1.0 + 1e-6
    assert set(out.timings) == {"preprocess", "network", "restore"}
    # A trained model, not noise: every structure is found on the held-out sample.
    for c in (1, 2, 3):
        assert dice(out.semantic == c, ref == c) > 0.75
    info = segmenter.info
    assert info["runtime"] == "onnxruntime" and info["device"] == "cpu" and len(info["sha256"]) == 64


def test_intensity_scale_does_not_matter(segmenter, sample_volume):
    """12-16 bit scanners: the same image scaled x16 (+offset) gives the same labels."""
    vol, _ = sample_volume
    a = segmenter.segment(vol).semantic
    scaled = vol.with_array(vol.array.astype(np.uint16) * 16 + 100)
    b = segmenter.segment(scaled).semantic
    assert np.mean(a != b) < 1e-3


def test_corrupted_weights_are_refused(tmp_path, repo_root):
    folder = tmp_path / "models"
    shutil.copytree(repo_root / "models", folder)
    onnx = next(folder.glob("*.onnx"))
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        NetworkSegmenter(folder, device="cpu")


def test_model_dir_resolution(tmp_path, repo_root, monkeypatch):
    monkeypatch.delenv(MODEL_ENV, raising=False)
    assert resolve_model_dir() == repo_root / "models"
    with pytest.raises(ModelError, match="models.json"):
        resolve_model_dir(tmp_path)
    folder = tmp_path / "offline"
    shutil.copytree(repo_root / "models", folder)
    monkeypatch.setenv(MODEL_ENV, str(folder))
    assert resolve_model_dir() == folder
    catalog = json.loads((folder / "models.json").read_text())
    catalog["models"][0]["files"]["torch"]["path"] = "missing.pt"
    (folder / "models.json").write_text(json.dumps(catalog))
    with pytest.raises(ModelError, match="missing"):
        get_model().file("torch")


def test_bad_device_is_refused():
    with pytest.raises(ModelError):
        NetworkSegmenter(device="tpu")


def test_divisor_without_torch_matches_the_network(repo_root):
    from lvp.network.vnet import VNetConfig
    from lvp.segmenter import network_divisor

    entry = get_model(repo_root / "models")
    assert network_divisor(entry.network) == VNetConfig(**entry.network).divisor
    for cfg in ({}, {"channels": [8, 16, 32], "anisotropic_levels": 1, "stem_stride": False}):
        assert network_divisor(cfg) == VNetConfig(**cfg).divisor


def test_cpu_inference_imports_no_torch(sample_case):
    """A one-case CPU run (the Slicer module's child process) must not pay for importing torch."""
    import subprocess
    import sys

    code = ("import sys, lvp.cli\n"
            "lvp.cli.build_parser()\n"
            "from lvp.pipeline import make_segmenter\n"
            "from lvp.io.read import read_volume\n"
            f"seg = make_segmenter(device='cpu'); seg.segment(read_volume({str(sample_case)!r}))\n"
            "import lvp.report.html\n"
            "heavy = [m for m in ('torch', 'monai', 'matplotlib', 'sqlalchemy') if m in sys.modules]\n"
            "print(heavy); sys.exit(1 if heavy else 0)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_default_model_dir_in_an_installed_extension_layout(tmp_path, repo_root, monkeypatch):
    """In Slicer the core lives in qt-scripted-modules/lvp and the models may sit beside it."""
    import importlib.util
    import shutil
    import sys

    modules = tmp_path / "lib" / "Slicer-5.12" / "qt-scripted-modules"
    (modules / "lvp").mkdir(parents=True)
    shutil.copy(repo_root / "LumbarVNetPro" / "lvp" / "model_catalog.py", modules / "lvp" / "model_catalog.py")
    spec = importlib.util.spec_from_file_location("installed_model_catalog", modules / "lvp" / "model_catalog.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    # No catalogue anywhere: the source-tree default (two levels up) is returned.
    assert mod.default_model_dir() == (modules.parent / "models").resolve()
    (modules / "models").mkdir()
    (modules / "models" / "models.json").write_text("{}")
    assert mod.default_model_dir() == (modules / "models").resolve()


def _tiny_model_folder(tmp_path, out_channels: int):
    """A small random network exported as a model folder (ONNX + torch + models.json)."""
    import torch

    from lvp.network.export import export_model_folder
    from lvp.network.vnet import VNetConfig, build_vnet

    cfg = VNetConfig(out_channels=out_channels, channels=[4, 8, 8, 16, 16], convs=[1, 1, 1, 1, 1])
    torch.manual_seed(out_channels)
    net = build_vnet(cfg)
    with torch.no_grad():  # make every class win somewhere: bias the head towards the last class
        net.head.bias.copy_(torch.linspace(-0.2, 0.2, out_channels))
    torch.save({"model": net.state_dict(), "network": cfg.to_dict(), "config": {"spacing": [2.0, 2.0, 2.0]}},
               tmp_path / f"w{out_channels}.pt")
    folder = tmp_path / f"m{out_channels}"
    export_model_folder(tmp_path / f"w{out_channels}.pt", folder, name="tiny", version="0.0.1")
    return folder


@pytest.mark.parametrize("n", [4, 5])
def test_four_and_five_class_models_both_run(tmp_path, sample_volume, n):
    """The sacrum class (4) comes only from 5-class models; 4-class models keep working."""
    folder = _tiny_model_folder(tmp_path, n)
    seg = NetworkSegmenter(folder, device="cpu")
    assert len(seg.classes) == n and seg.has_sacrum == (n == 5)
    assert seg.info["classes"][-1] == ("sacrum" if n == 5 else "canal")
    vol, _ = sample_volume
    out = seg.segment(vol)
    values = set(np.unique(out.semantic).tolist())
    assert values <= set(range(n)) and (4 in values) == (n == 5)


def test_classes_and_channels_must_agree(tmp_path):
    folder = _tiny_model_folder(tmp_path, 5)
    catalog = json.loads((folder / "models.json").read_text())
    del catalog["models"][0]["classes"]["4"]
    (folder / "models.json").write_text(json.dumps(catalog))
    with pytest.raises(ModelError, match="5 output channels but 4 classes"):
        NetworkSegmenter(folder, device="cpu")


def test_synthesised_t1_and_inverted_sample_are_read(segmenter, sample_volume):
    """Contrast-agnostic by design (issue 10): a T1-like and an inverted version of the held-out
    sample are segmented (1.0.0, trained on T2 only, fails this: T1-like canal Dice 0.04, inverted
    disc Dice 0.00; 1.1.0: 0.90 and 0.73)."""
    from lvp.evaluation import synthesise_contrast

    vol, ref = sample_volume
    for mode, floor in (("t1", 0.8), ("invert", 0.7)):
        out = segmenter.segment(vol.with_array(synthesise_contrast(vol.array, ref, mode)))
        for c in (1, 2, 3):
            assert dice(out.semantic == c, ref == c) > floor, (mode, c)


def test_zero_filled_padding_stays_background(segmenter, sample_volume):
    """Padding (all-zero slices) is never given a class, and the image inside is segmented as before."""
    import dataclasses

    from lvp.segmenter import clear_empty_slices

    volume, _ = sample_volume
    a = volume.array
    padded = np.zeros((a.shape[0] + 20, a.shape[1] + 40, a.shape[2] + 60), a.dtype)
    inside = (slice(10, -10), slice(20, -20), slice(30, -30))
    padded[inside] = a
    out = segmenter.segment(dataclasses.replace(volume, array=padded)).semantic
    outside = np.ones(out.shape, bool)
    outside[inside] = False
    assert np.count_nonzero(out[outside]) == 0
    plain = segmenter.segment(volume).semantic
    for c in (1, 2, 3):
        assert dice(out[inside] == c, plain == c) > 0.8

    # Only whole empty slices are cleared: a zero voxel inside the image keeps its class.
    image = np.ones((4, 5, 6), np.uint8)
    image[1] = 0
    image[2, 2, 3] = 0
    labels = np.full(image.shape, 3, np.uint8)
    assert clear_empty_slices(labels, image) == 30
    assert (labels[1] == 0).all() and labels[2, 2, 3] == 3 and np.count_nonzero(labels) == 90
