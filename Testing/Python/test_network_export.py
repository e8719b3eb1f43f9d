"""The network: shapes, ONNX export agreement with torch, and same labels on the sample case."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from lvp.io.volume import canonical_volume
from lvp.model_catalog import get_model
from lvp.network import VNetConfig, build_vnet
from lvp.network.export import export_model_folder, load_weights, max_abs_difference
from lvp.preprocess import restore, to_network_grid
from lvp.segmenter import NetworkSegmenter


@pytest.mark.parametrize("cfg", [VNetConfig(), VNetConfig(stem_stride=False, channels=[4, 8, 8, 16, 16]),
                                 VNetConfig(anisotropic_levels=0, channels=[4, 8, 8, 16, 16])])
def test_output_shape_matches_input(cfg):
    net = build_vnet(cfg).eval()
    shape = tuple(d * 2 for d in cfg.divisor)
    with torch.inference_mode():
        y = net(torch.zeros(1, 1, *shape))
    assert tuple(y.shape) == (1, 4, *shape)


def test_export_roundtrip_agrees(tmp_path):
    cfg = VNetConfig(channels=[4, 8, 8, 16, 16])
    net = build_vnet(cfg)
    with torch.no_grad():  # non-trivial BN statistics, so folding is exercised
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    torch.save({"model": net.state_dict(), "network": cfg.to_dict(), "config": {"spacing": [2.0, 1.0, 1.0]}},
               tmp_path / "w.pt")
    entry = export_model_folder(tmp_path / "w.pt", tmp_path / "m", name="tiny", version="0.0.1")
    model, _ = load_weights(tmp_path / "m" / entry["files"]["torch"]["path"])
    assert max_abs_difference(model, tmp_path / "m" / "tiny.onnx") < 1e-4
    assert get_model(tmp_path / "m", "tiny").input_spacing == (2.0, 1.0, 1.0)


def test_onnx_and_torch_same_labels_on_sample(sample_case):
    """CPU (ONNX Runtime) and GPU path (torch weights, here run on the CPU) agree on the sample."""
    img = sitk.ReadImage(str(sample_case))
    vol = canonical_volume(img)
    vol.array = np.array(vol.array, copy=True)
    seg = NetworkSegmenter(device="cpu")
    entry = get_model()
    model, _ = load_weights(entry.file("torch"))
    x, grid = to_network_grid(vol.array, vol.spacing, entry.input_spacing, seg.divisor)
    with torch.inference_mode():
        torch_logits = model(torch.from_numpy(x)).numpy()[0]
    sem_torch, _ = restore(torch_logits, grid)
    sem_onnx = seg.segment(vol).semantic
    assert np.mean(sem_torch != sem_onnx) < 1e-5
