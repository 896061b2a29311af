"""Trainable parameters per method and training memory for each family at its real size: the
tables of docs/models.md.

The arithmetic lives in ptpeft_cli/planning/sizes.py (shared with `ptpeft plan`): each checkpoint's
architecture is built from its shipped `config.json` on the `meta` device (shapes only, no
download) and the real method code decides what trains. Memory = weights + gradients + AdamW state
for bf16 weights (frozen 2 bytes, trained 8, LoRA 16 per parameter); activations not included.

    python scripts/model_sizes.py            # markdown tables for docs/models.md
"""

from __future__ import annotations

import argparse

from ptpeft_cli.models.real_size import build_model, real_checkpoints
from ptpeft_cli.planning.sizes import METHODS, count, method_config

GIB = 1024**3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="checkpoint names to include")
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


def _params(cell: tuple[int, int] | None, total: int) -> str:
    if cell is None:
        return "refused"
    value = cell[0]
    text = f"{value / 1e9:.2f} B" if value >= 1e8 else f"{value / 1e6:.2f} M" if value >= 1e5 else f"{value / 1e3:.1f} K"
    return f"{text} ({100 * value / total:.3g}%)"


if __name__ == "__main__":
    main()
