"""The LVP segmentation network (a V-Net shaped for speed on sagittal MRI)."""

from lvp.network.vnet import VNetConfig, build_vnet

__all__ = ["VNetConfig", "build_vnet"]
