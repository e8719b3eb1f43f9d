"""A V-Net (Milletari et al. 2016) shaped for fast sagittal lumbar MRI segmentation.

Like the V-Net of the Lumbar VNet Pro paper it has residual blocks at every level and learned
down-sampling (strided convolutions) and up-sampling (transposed convolutions). For speed on a CPU:

* the first levels use ``(1, 3, 3)`` kernels and stride ``(1, 2, 2)``: sagittal MRI slices are
  thick (often 3-4 mm) compared with the ~1 mm in-plane working resolution, so mixing across
  slices only pays off once the in-plane grid has been coarsened;
* few channels at full resolution, where almost all the voxels are;
* batch normalisation, which ONNX Runtime folds into the convolutions at inference.

Tensor axes are ``(batch, channel, lr, si, ap)``, the canonical orientation of
:mod:`lvp.io.volume`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn


@dataclass
class VNetConfig:
    """Shape of the network; saved with every checkpoint and in ``models.json``."""

    in_channels: int = 1
    out_channels: int = 4
    channels: list[int] = field(default_factory=lambda: [8, 16, 32, 64, 96])
    # Per level: number of convolutions in the residual block and whether kernels span slices.
    convs: list[int] = field(default_factory=lambda: [1, 2, 2, 2, 2])
    anisotropic_levels: int = 2  # levels 0..n-1 use (1,3,3) kernels and (1,2,2) down-sampling
    # A strided "patchify" stem and a transposed-conv head: the stages run at half the in-plane
    # working resolution and the output comes back at full resolution (most of the CPU time of a
    # plain V-Net goes into the full-resolution stage).
    stem_stride: bool = True

    def to_dict(self) -> dict:
        """Plain-dict form for JSON/YAML."""
        return asdict(self)

    @property
    def divisor(self) -> tuple[int, int, int]:
        """Input sizes must be multiples of this along (lr, si, ap)."""
        n_down = len(self.channels) - 1
        lr = 2 ** max(0, n_down - self.anisotropic_levels)
        inplane = 2 ** (n_down + int(self.stem_stride))
        return (lr, inplane, inplane)


def _kernel(aniso: bool) -> tuple[int, int, int]:
    return (1, 3, 3) if aniso else (3, 3, 3)


class ResBlock(nn.Module):
    """``n`` conv-BN-ReLU layers with a residual connection (the V-Net stage)."""

    def __init__(self, ch: int, n: int, aniso: bool, in_ch: int | None = None) -> None:
        super().__init__()
        k = _kernel(aniso)
        pad = tuple(s // 2 for s in k)
        in_ch = in_ch or ch
        layers: list[nn.Module] = []
        for i in range(n):
            layers += [
                nn.Conv3d(in_ch if i == 0 else ch, ch, k, padding=pad, bias=False),
                nn.BatchNorm3d(ch),
            ]
            if i < n - 1:
                layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)
        self.skip = nn.Identity() if in_ch == ch else nn.Conv3d(in_ch, ch, 1, bias=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual stage."""
        return self.act(self.body(x) + self.skip(x))


def _down(cin: int, cout: int, aniso: bool) -> nn.Module:
    stride = (1, 2, 2) if aniso else (2, 2, 2)
    return nn.Sequential(
        nn.Conv3d(cin, cout, stride, stride=stride, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)
    )


def _up(cin: int, cout: int, aniso: bool) -> nn.Module:
    stride = (1, 2, 2) if aniso else (2, 2, 2)
    return nn.Sequential(
        nn.ConvTranspose3d(cin, cout, stride, stride=stride, bias=False),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
    )


class VNet(nn.Module):
    """Encoder-decoder with residual stages, strided-conv down- and transposed-conv up-sampling."""

    def __init__(self, cfg: VNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch, n = cfg.channels, len(cfg.channels)
        aniso = [i < cfg.anisotropic_levels for i in range(n)]
        if cfg.stem_stride:
            stem_conv = nn.Conv3d(cfg.in_channels, ch[0], (1, 2, 2), stride=(1, 2, 2), bias=False)
        else:
            stem_conv = nn.Conv3d(cfg.in_channels, ch[0], _kernel(True), padding=(0, 1, 1), bias=False)
        self.stem = nn.Sequential(stem_conv, nn.BatchNorm3d(ch[0]), nn.ReLU(inplace=True))
        self.enc = nn.ModuleList([ResBlock(ch[i], cfg.convs[i], aniso[i]) for i in range(n)])
        self.down = nn.ModuleList([_down(ch[i], ch[i + 1], aniso[i]) for i in range(n - 1)])
        self.up = nn.ModuleList([_up(ch[i + 1], ch[i], aniso[i]) for i in range(n - 1)])
        # Decoder stage i sees the up-sampled features concatenated with the skip (2*ch[i]).
        self.dec = nn.ModuleList(
            [ResBlock(ch[i], max(1, cfg.convs[i]), aniso[i], in_ch=2 * ch[i]) for i in range(n - 1)]
        )
        if cfg.stem_stride:
            self.head: nn.Module = nn.ConvTranspose3d(ch[0], cfg.out_channels, (1, 2, 2), stride=(1, 2, 2))
        else:
            self.head = nn.Conv3d(ch[0], cfg.out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, out_channels, lr, si, ap)`` for an input of the same spatial size."""
        x = self.stem(x)
        skips = []
        for i, block in enumerate(self.enc):
            x = block(x)
            if i < len(self.down):
                skips.append(x)
                x = self.down[i](x)
        for i in reversed(range(len(self.up))):
            x = self.up[i](x)
            x = self.dec[i](torch.cat([x, skips[i]], dim=1))
        return self.head(x)


def build_vnet(cfg: VNetConfig | dict | None = None) -> VNet:
    """Build the network from a config (dataclass or dict)."""
    if cfg is None:
        cfg = VNetConfig()
    elif isinstance(cfg, dict):
        cfg = VNetConfig(**cfg)
    return VNet(cfg)


# New output classes start from an existing one: the sacrum (4) from the vertebra (1), bone alike.
HEAD_INIT_FROM = {4: 1}


def expand_head(state: dict, out_channels: int, init_from: dict[int, int] | None = None,
                transposed: bool | None = None) -> dict:
    """A state dict whose output head has ``out_channels`` classes, from one with fewer.

    The existing classes keep their weights; each new class ``k`` copies class
    ``init_from[k]`` (default :data:`HEAD_INIT_FROM`, else background) with its bias lowered by 1,
    so the fine-tuning starts from the old predictions (the copy never wins a tie). A state
    that already has ``out_channels`` is returned unchanged. ``transposed`` says whether the head
    is a transposed convolution (``VNetConfig.stem_stride``); inferred from the bias size when
    omitted, which is ambiguous when the head has as many input as output channels.
    """
    init_from = HEAD_INIT_FROM if init_from is None else init_from
    out = dict(state)
    w, b = state.get("head.weight"), state.get("head.bias")
    if w is None:
        raise ValueError("the state dict has no head.weight")
    # ConvTranspose3d stores (in, out, ...), Conv3d (out, in, ...).
    if transposed is None:
        if b is None or w.shape[0] == w.shape[1]:
            raise ValueError("cannot tell the head's output axis: pass transposed=")
        transposed = w.shape[1] == b.shape[0]
    dim = 1 if transposed else 0
    have = w.shape[dim]
    if have == out_channels:
        return out
    if have > out_channels:
        raise ValueError(f"cannot shrink a {have}-class head to {out_channels}")
    extra_w, extra_b = [], []
    for k in range(have, out_channels):
        src = init_from.get(k, 0)
        extra_w.append(w.select(dim, src).unsqueeze(dim).clone())
        if b is not None:
            extra_b.append(b[src:src + 1].clone() - 1.0)
    out["head.weight"] = torch.cat([w, *extra_w], dim=dim)
    if b is not None:
        out["head.bias"] = torch.cat([b, *extra_b])
    return out
