"""A 5-class (sacrum) head grown from the shipped 4-class weights keeps the old predictions."""

from __future__ import annotations

import pytest
import torch

from lvp.network.vnet import VNetConfig, build_vnet, expand_head

SMALL = {"channels": [4, 8, 8, 16, 16], "convs": [1, 1, 1, 1, 1]}


@pytest.mark.parametrize("stem_stride", [True, False])
def test_expanded_head_keeps_old_classes_and_copies_vertebra(stem_stride):
    torch.manual_seed(0)
    old = build_vnet(VNetConfig(out_channels=4, stem_stride=stem_stride, **SMALL)).eval()
    new = build_vnet(VNetConfig(out_channels=5, stem_stride=stem_stride, **SMALL)).eval()
    new.load_state_dict(expand_head(old.state_dict(), 5, transposed=stem_stride))
    x = torch.rand(1, 1, 4, 64, 64)
    with torch.no_grad():
        a, b = old(x), new(x)
    assert b.shape[1] == 5
    assert torch.allclose(b[:, :4], a, atol=1e-6)
    # Sacrum starts as the vertebra logit minus 1: the argmax is unchanged until it is trained.
    assert torch.allclose(b[:, 4], a[:, 1] - 1.0, atol=1e-5)
    assert torch.equal(b.argmax(1), a.argmax(1))


def test_expand_head_refuses_to_shrink_and_passes_equal():
    state = build_vnet(VNetConfig(out_channels=5, **SMALL)).state_dict()
    assert expand_head(state, 5)["head.weight"] is state["head.weight"]
    with pytest.raises(ValueError, match="shrink"):
        expand_head(state, 4, transposed=True)
    # A square head (as many input as output channels) cannot be read without being told.
    square = build_vnet(VNetConfig(out_channels=4, **SMALL)).state_dict()
    with pytest.raises(ValueError, match="transposed"):
        expand_head(square, 5)


def test_shipped_weights_grow_a_sacrum_head(repo_root):
    ckpt = torch.load(repo_root / "models" / "lvp-vnet.pt", map_location="cpu", weights_only=True)
    cfg = {**ckpt["network"], "out_channels": 5}
    model = build_vnet(VNetConfig(**cfg))
    model.load_state_dict(expand_head(ckpt["model"], 5))  # 8 in, 4 out: unambiguous
    assert model.head.weight.shape[1 if cfg["stem_stride"] else 0] == 5
