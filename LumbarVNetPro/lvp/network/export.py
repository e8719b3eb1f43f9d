"""Export trained weights to a model folder: ONNX + torch weights + ``models.json`` entry."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from lvp.errors import ModelError
from lvp.labels import NETWORK_CLASSES, SACRUM
from lvp.model_catalog import CATALOG, sha256_of
from lvp.network.vnet import VNetConfig, build_vnet

OPSET = 17


def load_weights(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """A network in eval mode from a training ``model.pt``/``last.pt`` or a shipped ``*.pt``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many kinds for a bad file
        raise ModelError(f"cannot load network weights {path}: {err}") from err
    if not isinstance(state, dict) or "model" not in state or "network" not in state:
        raise ModelError(f"{path} is not an LVP network checkpoint (needs 'model' and 'network')")
    model = build_vnet(VNetConfig(**state["network"]))
    model.load_state_dict(state["model"])
    return model.eval(), state


def output_classes(n: int) -> dict[str, str]:
    """``models.json`` classes of an ``n``-output network: the 4 base classes, then the sacrum (4)."""
    names = {**NETWORK_CLASSES, SACRUM: "sacrum"}
    return {str(k): names.get(k, f"class{k}") for k in range(n)}


def export_onnx(model: torch.nn.Module, path: str | Path, example_shape=(1, 1, 16, 64, 64)) -> Path:
    """Write ``model`` as ONNX with dynamic spatial axes (input ``image``, output ``logits``)."""
    x = torch.zeros(*example_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), x, str(path), input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch", 2: "lr", 3: "si", 4: "ap"},
                                        "logits": {0: "batch", 2: "lr", 3: "si", 4: "ap"}},
                          opset_version=OPSET, dynamo=False)
    return Path(path)


def export_model_folder(
    weights: str | Path, out_dir: str | Path, name: str = "lvp-vnet", version: str = "1.0.0",
    input_spacing: list[float] | None = None, extra: dict | None = None,
) -> dict:
    """Write ``<name>.onnx``, ``<name>.pt`` and the entry in ``models.json`` (merged); returns the entry."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, state = load_weights(weights)
    spacing = input_spacing or state.get("config", {}).get("spacing")
    if not spacing:
        raise ModelError("the checkpoint records no working spacing; pass input_spacing")
    pt_path, onnx_path = out / f"{name}.pt", out / f"{name}.onnx"
    torch.save({"model": model.state_dict(), "network": state["network"]}, pt_path)
    export_onnx(model, onnx_path)
    entry = {
        "name": name,
        "version": version,
        "input_spacing": [float(s) for s in spacing],
        "axes": "canonical (lr, si, ap): see lvp.io.volume",
        "network": state["network"],
        "classes": output_classes(int(state["network"].get("out_channels", 4))),
        "normalisation": "percentile 0.5-99.5 scaling to [0, 1] (lvp.preprocess.normalise_intensity)",
        "files": {
            "onnx": {"path": onnx_path.name, "sha256": sha256_of(onnx_path), "opset": OPSET},
            "torch": {"path": pt_path.name, "sha256": sha256_of(pt_path)},
        },
        **(extra or {}),
    }
    catalog_path = out / CATALOG
    catalog = json.loads(catalog_path.read_text()) if catalog_path.exists() else {"default": name, "models": []}
    catalog["models"] = [m for m in catalog["models"] if m.get("name") != name] + [entry]
    catalog.setdefault("default", name)
    catalog_path.write_text(json.dumps(catalog, indent=2) + "\n")
    return entry


def max_abs_difference(model: torch.nn.Module, onnx_path: str | Path, shape=(1, 1, 8, 64, 64)) -> float:
    """Largest |torch - onnxruntime| logit difference on a random input (export check)."""
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return float(np.abs(sess.run(None, {"image": x})[0] - ref).max())
