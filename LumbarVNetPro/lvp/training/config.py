"""Training configuration (YAML <-> dataclass)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from lvp.errors import ConfigError
from lvp.network.vnet import VNetConfig


@dataclass
class TrainConfig:
    """Everything that defines a training run; relative paths are relative to the YAML file."""

    name: str = "lvp-vnet"
    seed: int = 20260
    data_roots: list[str] = field(default_factory=lambda: ["../../shared/data/spider-t2-space"])
    cache: str = "../.gpu/lvp_cache.npz"
    cache_spacing: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    validation: list[str] = field(default_factory=list)
    spacing: list[float] = field(default_factory=lambda: [2.0, 1.0, 1.0])
    network: dict = field(default_factory=lambda: VNetConfig().to_dict())
    patch: list[int] = field(default_factory=lambda: [16, 256, 224])
    batch_size: int = 4
    samples_per_epoch: int = 96
    epochs: int = 300
    time_budget_s: float = 0.0  # stop (and save) after this many seconds; 0 = no limit
    lr: float = 2e-3
    weight_decay: float = 1e-4
    amp: bool = True
    workers: int = 2
    val_every: int = 5
    out_dir: str = "../runs/train_lvp_vnet"
    max_cases: int = 0  # 0 = all; tests use a few
    crop_only: bool = False  # tests: skip the heavier spatial augmentations
    init_weights: str = ""  # start from these weights (a model.pt), e.g. to continue a finished run
    derived_labels: str = ""  # folder of <case>_labels5.nii.gz (incl. the derived sacrum) replacing the masks
    contrast_augment: bool = False  # domain randomisation (lvp.training.transforms: per-class contrast, ...)
    threads: int = 0  # torch intra-op threads (0 = torch's default); 1 leaves the other cores to others
    config_dir: str = "."

    def path(self, p: str) -> Path:
        """Resolve a path from the config relative to the config file's folder."""
        q = Path(p).expanduser()
        return q if q.is_absolute() else (Path(self.config_dir) / q).resolve()

    def to_dict(self) -> dict:
        """Plain dict (saved in checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, config_dir: str | Path = ".") -> TrainConfig:
        """Build from a dict; unknown keys are an error (typos must not pass silently)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown training config keys: {', '.join(unknown)}")
        cfg = cls(**{**d, "config_dir": str(d.get("config_dir", config_dir))})
        if len(cfg.spacing) != 3 or len(cfg.patch) != 3:
            raise ConfigError("spacing and patch need three values (lr, si, ap)")
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Read a YAML config file."""
        path = Path(path)
        try:
            d = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"cannot read training config {path}: {err}") from err
        if not isinstance(d, dict):
            raise ConfigError(f"{path} does not hold a mapping")
        d.pop("config_dir", None)
        return cls.from_dict(d, config_dir=path.resolve().parent)
