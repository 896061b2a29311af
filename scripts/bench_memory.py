"""Peak memory of one method training a scaled-up tiny LLaVA (bench.py runs one process per
method, so each peak is that method's own). The language model is widened and deepened by config
so that weights, gradients and optimizer state dominate, as they do for real LMMs; the shipped
processor's image size keeps the image tokens as in the default run. Prints one JSON line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# (hidden, intermediate, layers, heads): ~100M language-model parameters, or a tiny smoke size.
SCALES = {"big": (1024, 2816, 8, 16), "tiny": (64, 128, 2, 4)}


def status_mib(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmRSS now, VmHWM peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", required=True)
    parser.add_argument("--scale", choices=sorted(SCALES), default="big")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()

    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    from ptpeft_cli.cli import compose_config
    from ptpeft_cli.methods import get_method
    from ptpeft_cli.methods.base import count_parameters, freeze_all
    from ptpeft_cli.models import get_family
    from ptpeft_cli.models.base import LoadedModel
    from ptpeft_cli.models.tiny_llava import IGNORE_INDEX, shipped_checkpoint_dir
    from ptpeft_cli.training.hardware import resolve_hardware
    from ptpeft_cli.training.loop import build_optimizer, train_step
    from ptpeft_cli.training.throughput import peak_memory, reset_peak_memory

    hardware = resolve_hardware("auto", "auto")
    cuda = hardware.device.type == "cuda"
    cfg = compose_config("train", [f"method={args.method}"])
    method = get_method(args.method)
    import peft  # noqa: F401 - imported before the baseline, as every other module the methods use

    reset_peak_memory(hardware.device)  # imports allocate and free hundreds of MiB: not this method's peak
    baseline = status_mib("VmRSS")
    config = LlavaConfig.from_pretrained(shipped_checkpoint_dir())
    hidden, intermediate, layers, heads = SCALES[args.scale]
    text = config.text_config
    text.hidden_size, text.intermediate_size, text.num_hidden_layers = hidden, intermediate, layers
    text.num_attention_heads = text.num_key_value_heads = heads
    text.head_dim = hidden // heads
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).to(hardware.device)
    loaded = LoadedModel(model=model, processor=None, family=get_family("tiny_llava"), extras={"max_length": 64})
    weights = status_mib("VmRSS") - baseline
    freeze_all(loaded.model)  # as `ptpeft train`: the method's stages say what trains
    plans = method.stages(cfg.method, args.steps)
    for index in range(len(plans)):  # multi-stage methods: measure the last (all parts present)
        method.setup_stage(loaded, cfg.method, index)
    loaded.model.to(hardware.device)
    trainable, total = count_parameters(loaded.model)

    image_tokens = (config.vision_config.image_size // config.vision_config.patch_size) ** 2
    generator = torch.Generator().manual_seed(1)
    text_ids = torch.randint(4, text.vocab_size - 1, (args.batch_size, 24), generator=generator)
    images = torch.full((args.batch_size, image_tokens), config.image_token_id)
    input_ids = torch.cat([torch.full((args.batch_size, 1), 2), images, text_ids], dim=1)
    labels = torch.cat([torch.full((args.batch_size, 1 + image_tokens), IGNORE_INDEX), text_ids], dim=1)
    pixels = torch.randn(args.batch_size, 3, config.vision_config.image_size, config.vision_config.image_size,
                         generator=generator)
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels,
             "pixel_values": pixels}

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    model = loaded.model
    model.train()
    optimizer, scheduler = build_optimizer(model, plans[-1].lr, 0.0, args.steps, 0, "constant")
    for _ in range(args.steps):  # the optimizer state exists from the first step on
        train_step(model, [batch], optimizer, scheduler, hardware, 1.0)
    peak = peak_memory(hardware.device)["peak_rss_gib"] * 1024
    result = {"method": args.method, "scale": args.scale, "params_total": total, "params_trainable": trainable,
              "baseline_mib": baseline, "weights_mib": weights, "peak_rss_mib": peak,
              "peak_over_baseline_mib": peak - baseline, "device": hardware.device.type}
    if cuda:
        result["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(result))


if __name__ == "__main__":
    main()
