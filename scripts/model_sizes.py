"""Trainable parameters per method and training memory for each family at its real size.

No weights are needed: each model is instantiated from its config on the `meta` device (shapes
only, no memory) and the real method code (`setup_stage`, peft's LoRA wrapping, our adapters
and prefix encoder) decides what trains, so the counts are exactly what `ptpeft train` reports
as `params/trainable`. The configs are the checkpoints' `config.json` files shipped in
ptpeft_cli/models/real_configs/ (models/real_size.py).

Memory = weights + gradients + AdamW state, for `model.dtype=auto` on a GPU (bf16 weights):
frozen parameters 2 bytes; trained bf16 parameters (full, adapters, prefix) 2 + 2 (gradient)
+ 4 (two AdamW moments kept in the parameter's dtype) = 8 bytes; LoRA weights, which peft keeps
in fp32 over a bf16 model, 4 + 4 + 8 = 16 bytes. Activations (batch and sequence dependent)
and the CUDA context are not included.

    python scripts/model_sizes.py            # markdown tables for docs/models.md
    python scripts/model_sizes.py --only llava-hf/llava-1.5-7b-hf --measured outputs/bench/gpu.json
                                             # + peaks a GPU measured, next to the estimates
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

from measured_memory import measured_table
from omegaconf import OmegaConf
from torch import nn

from ptpeft_cli.config import MethodConfig
from ptpeft_cli.errors import UserError
from ptpeft_cli.methods import get_method
from ptpeft_cli.methods.prefix import build_prefix, check_prefix_mode, prefix_meta
from ptpeft_cli.models import get_family
from ptpeft_cli.models.base import LoadedModel
from ptpeft_cli.models.real_size import build_model, real_checkpoints

CONF = Path(__file__).resolve().parents[1] / "conf" / "method"
GIB = 1024**3

# column -> (method config file, overrides)
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "full": ("full", {}),
    "lora": ("lora", {}),
    "adapter": ("adapter", {}),
    "prefix input": ("prefix", {"prefix": {"mode": "input"}}),
    "prefix kv": ("prefix", {"prefix": {"mode": "kv"}}),
    "pt_peft (prefix+LoRA)": ("pt_peft", {}),
    "pt_adapter": ("pt_adapter", {}),
}


def method_config(name: str, overrides: dict[str, Any]) -> MethodConfig:
    """The shipped defaults of conf/method/<name>.yaml (pt_adapter extends pt_peft)."""
    cfg = OmegaConf.structured(MethodConfig)
    files = ["pt_peft", "pt_adapter"] if name == "pt_adapter" else [name]
    for file in files:
        values = OmegaConf.load(CONF / f"{file}.yaml")
        values.pop("defaults", None)
        cfg = OmegaConf.merge(cfg, values)
    return OmegaConf.to_object(OmegaConf.merge(cfg, overrides))


def count(family_name: str, base: nn.Module, cfg: MethodConfig) -> tuple[int, int] | None:
    """(trainable parameters, training bytes) of `cfg` on a copy of `base`; None if refused."""
    family = get_family(family_name)
    model = copy.deepcopy(base)
    family.configure(model)  # the generic family reads its LoRA targets from the model
    loaded = LoadedModel(model=model, processor=None, family=family)
    prefix_params = 0
    try:
        if cfg.name in ("prefix", "pt_peft"):  # built, not initialised (that would run the model)
            check_prefix_mode(loaded, cfg.prefix.mode)
            prefix_params = sum(p.numel() for p in build_prefix(loaded, prefix_meta(loaded, cfg)).parameters())
        if cfg.name == "full":  # FullMethod's rule; its tied-weight dedup reads storage, absent on meta
            for name, param in model.named_parameters():
                param.requires_grad_(family.full_trainable(name, bool(cfg.train_vision)))
        elif cfg.name != "prefix":
            get_method(cfg.stage2 if cfg.name == "pt_peft" else cfg.name).setup_stage(loaded, cfg, 0)
        else:
            loaded.model.requires_grad_(False)
    except UserError:
        return None
    params = {id(p): p for p in loaded.model.parameters()}  # meta tensors: compare identities
    lora = sum(p.numel() for n, p in loaded.model.named_parameters() if p.requires_grad and "lora_" in n)
    trained = sum(p.numel() for p in params.values() if p.requires_grad)
    frozen = sum(p.numel() for p in params.values() if not p.requires_grad)
    other = trained - lora + prefix_params
    return lora + other, 2 * frozen + 16 * lora + 8 * other


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="checkpoint names to include")
    parser.add_argument("--measured", type=Path, help="a gpu.json of `make bench-gpu`: measured peaks next to estimates")
    args = parser.parse_args()
    columns = list(METHODS)
    params_rows, memory_rows = [], []
    for checkpoint, real in real_checkpoints().items():
        family_name = real.family
        if args.only and checkpoint not in args.only:
            continue
        base = build_model(checkpoint)
        total = sum(p.numel() for p in {id(p): p for p in base.parameters()}.values())
        cells = [count(family_name, base, method_config(file, over)) for file, over in METHODS.values()]
        head = f"| {checkpoint} (`{family_name}`) | {total / 1e9:.2f} B |"
        params_rows.append(head + "".join(f" {_params(c, total)} |" for c in cells))
        memory_rows.append(f"| {checkpoint} | {2 * total / GIB:.1f} |"
                           + "".join(f" {'refused' if c is None else f'{c[1] / GIB:.1f}'} |" for c in cells))
    print("| checkpoint | parameters | " + " | ".join(columns) + " |")
    print("|---|---:|" + "---:|" * len(columns))
    print("\n".join(params_rows))
    print("\n| checkpoint | bf16 weights (GiB) | " + " | ".join(columns) + " |")
    print("|---|---:|" + "---:|" * len(columns))
    print("\n".join(memory_rows))
    if args.measured:
        print("\n" + measured_table(json.loads(args.measured.read_text()), estimate_gib))


def estimate_gib(checkpoint: str, column: str | None) -> float | None:
    """This script's estimate for one cell (column None: the bf16 weights alone)."""
    real, base = real_checkpoints().get(checkpoint), build_model(checkpoint)
    if column is None:
        return 2 * sum(p.numel() for p in {id(p): p for p in base.parameters()}.values()) / GIB
    cell = count(real.family, base, method_config(*METHODS[column]))
    return None if cell is None else cell[1] / GIB


def _params(cell: tuple[int, int] | None, total: int) -> str:
    if cell is None:
        return "refused"
    value = cell[0]
    text = f"{value / 1e9:.2f} B" if value >= 1e8 else f"{value / 1e6:.2f} M" if value >= 1e5 else f"{value / 1e3:.1f} K"
    return f"{text} ({100 * value / total:.3g}%)"


if __name__ == "__main__":
    main()
