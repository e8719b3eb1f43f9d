"""The training loop: seeded, resumable, logged per epoch, AMP on GPU, DDP under ``torchrun``."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from monai.data import DataLoader, Dataset
from monai.losses import DiceCELoss
from monai.utils import set_determinism
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from lvp.evaluation import dice
from lvp.labels import CLASS_NAMES
from lvp.network.vnet import VNetConfig, build_vnet, expand_head
from lvp.preprocess import pad_to_multiple, resample
from lvp.training.cache import build_cache, load_cache
from lvp.training.config import TrainConfig
from lvp.training.transforms import to_sample, train_transforms

log = logging.getLogger("lvp.train")


def _dist_info() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from the torchrun environment; (0, 0, 1) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def load_training_data(cfg: TrainConfig) -> tuple[dict, dict]:
    """``(train, validation)`` dicts of case -> (image uint8, labels uint8) at ``cfg.spacing``."""
    cache = cfg.path(cfg.cache)
    derived = cfg.path(cfg.derived_labels) if cfg.derived_labels else None
    if not cache.exists():
        build_cache([cfg.path(r) for r in cfg.data_roots], cache, tuple(cfg.cache_spacing), cfg.max_cases, derived)
    meta, cases = load_cache(cache)
    if meta.get("derived_labels", "") != str(derived or ""):
        # A cache built without the derived sacrum would train a 5-class head on labels that never
        # hold class 4 (and the reverse): refuse rather than learn the wrong classes silently.
        raise ValueError(f"the training cache {cache} was built with derived_labels="
                         f"{meta.get('derived_labels', '') or 'none'!r}, the configuration asks for "
                         f"{str(derived or '') or 'none'!r}: delete the cache or point `cache` elsewhere")
    if cfg.max_cases:
        cases = dict(list(cases.items())[: cfg.max_cases])
    if list(meta["spacing"]) != list(cfg.spacing):
        cases = {k: _resample_case(img, lab, meta["spacing"], cfg.spacing) for k, (img, lab) in cases.items()}
    val = {k: v for k, v in cases.items() if k in set(cfg.validation)}
    train = {k: v for k, v in cases.items() if k not in set(cfg.validation)}
    return train, val


def _resample_case(img: np.ndarray, lab: np.ndarray, src: list[float], dst: list[float]) -> tuple:
    shape = tuple(max(1, int(round(n * s / t))) for n, s, t in zip(img.shape, src, dst))
    im = resample(img.astype(np.float32), shape).round().clamp(0, 255).to(torch.uint8).numpy()
    return im, resample(lab, shape, labels=True).numpy()


def poly_lr(base: float, progress: float) -> float:
    """Polynomial decay to zero at progress 1."""
    return base * max(0.0, 1.0 - progress) ** 0.9


def dice_per_class(pred: np.ndarray, ref: np.ndarray, classes=(1, 2, 3)) -> dict[int, float]:
    """Dice of each class (NaN where both are empty)."""
    out = {}
    for c in classes:
        p, r = pred == c, ref == c
        out[c] = dice(p, r) if p.any() or r.any() else float("nan")
    return out


@torch.no_grad()
def validate(model: torch.nn.Module, val: dict, divisor: tuple, device: torch.device, amp: bool) -> dict:
    """Mean Dice per class on whole validation volumes at the working grid."""
    model.eval()
    scores: dict[int, list[float]] = {}
    for img, lab in val.values():
        x = torch.from_numpy(img.astype(np.float32) / 255.0)
        xp, before = pad_to_multiple(x, divisor)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            logits = model(xp[None, None].to(device))[0].float()
        sl = tuple(slice(b, b + n) for b, n in zip(before, x.shape))
        pred = logits.argmax(0)[sl].cpu().numpy()
        for c, d in dice_per_class(pred, lab, tuple(range(1, logits.shape[0]))).items():
            scores.setdefault(c, []).append(d)
    model.train()
    return {CLASS_NAMES.get(c, str(c)): float(np.nanmean(v)) for c, v in scores.items()}


def _save(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: an interrupted save never leaves a broken checkpoint


def train(cfg: TrainConfig, resume: bool = False, distributed: bool | None = None, progress: bool = True) -> dict:
    """Train; returns ``{"history": [...], "checkpoint": path}``. Under torchrun uses DDP."""
    rank, local_rank, world = _dist_info()
    distributed = world > 1 if distributed is None else distributed
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # fixed patch size: let cuDNN pick its fastest kernels
    else:
        device = torch.device("cpu")
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed = cfg.seed + rank
    set_determinism(seed=seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

    out_dir = cfg.path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_cases, val_cases = load_training_data(cfg)
    if not train_cases:
        raise RuntimeError("no training cases found (check data_roots / cache / validation)")
    net_cfg = VNetConfig(**cfg.network)
    model = build_vnet(net_cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start_epoch, history, elapsed_before = 0, [], 0.0
    ckpt_path = out_dir / "last.pt"
    if cfg.init_weights and not (resume and ckpt_path.exists()):
        # Weights only (fine-tuning / continuing a run whose optimizer state was not kept).
        init = torch.load(cfg.path(cfg.init_weights), map_location=device, weights_only=False)
        model.load_state_dict(expand_head(init["model"], net_cfg.out_channels, transposed=net_cfg.stem_stride))
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch, history = state["epoch"] + 1, state["history"]
        elapsed_before = state.get("elapsed_s", 0.0)
        torch.set_rng_state(state["rng_torch"])
        np.random.set_state(state["rng_numpy"])
    ddp_model = DistributedDataParallel(model) if distributed else model
    amp = cfg.amp and device.type == "cuda"  # no AMP on the CPU: bf16 convs are slower than fp32 there

    samples = [to_sample(*train_cases[k]) for k in sorted(train_cases)]
    reps = max(1, math.ceil(cfg.samples_per_epoch / len(samples)))
    transform = train_transforms(cfg.patch, cfg.crop_only, cfg.contrast_augment, tuple(cfg.spacing))
    ds = Dataset((samples * reps)[: max(cfg.samples_per_epoch, 1)], transform=transform)
    sampler = None
    if distributed:
        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(ds, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=cfg.workers, generator=gen, drop_last=len(ds) >= cfg.batch_size * 2,
                        persistent_workers=cfg.workers > 0, pin_memory=device.type == "cuda")
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False)
    t0 = time.time()
    budget = cfg.time_budget_s
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        gen.manual_seed(cfg.seed * 1000 + epoch)  # same shuffles after a resume
        elapsed = elapsed_before + time.time() - t0
        prog = max(epoch / cfg.epochs, elapsed / budget if budget else 0.0)
        lr = poly_lr(cfg.lr, prog)
        for g in opt.param_groups:
            g["lr"] = lr
        losses = []
        quiet = not progress or rank != 0 or not sys.stderr.isatty()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=quiet, leave=False)
        for batch in bar:
            x = batch["image"].to(device, non_blocking=True).float()
            y = batch["label"].to(device, non_blocking=True).long()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = ddp_model(x)
            loss = loss_fn(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        rec = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan"), "lr": lr,
               "elapsed_s": round(elapsed_before + time.time() - t0, 1)}
        last = epoch + 1 == cfg.epochs or (budget and elapsed_before + time.time() - t0 >= budget)
        if val_cases and rank == 0 and ((epoch + 1) % cfg.val_every == 0 or last):
            rec["val_dice"] = validate(model, val_cases, net_cfg.divisor, device, amp)
        history.append(rec)
        if rank == 0:
            log.info(json.dumps(rec))
            with open(out_dir / "train_log.jsonl", "a") as fh:
                fh.write(json.dumps(rec) + "\n")
            _save(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                              "history": history, "config": cfg.to_dict(), "network": net_cfg.to_dict(),
                              "elapsed_s": rec["elapsed_s"], "rng_torch": torch.get_rng_state(),
                              "rng_numpy": np.random.get_state()})
        if last:
            break
    weights = out_dir / "model.pt"
    if rank == 0:
        # Weights only (no optimizer state): what export and the model catalogue use.
        _save(weights, {"model": model.state_dict(), "network": net_cfg.to_dict(), "config": cfg.to_dict(),
                        "history": history})
    if distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return {"history": history, "checkpoint": ckpt_path, "weights": weights, "last_epoch": epoch + 1}


def apply_overrides(cfg: TrainConfig, items: list[str]) -> TrainConfig:
    """``key=value`` overrides (values parsed as YAML)."""
    import yaml

    d = cfg.to_dict()
    for item in items:
        key, _, value = item.partition("=")
        d[key] = yaml.safe_load(value)
    return TrainConfig.from_dict(d, config_dir=cfg.config_dir)
