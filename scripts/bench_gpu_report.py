"""The GPU block of docs/benchmarks.md from a gpu.json (scripts/bench_gpu.py): issue 16's speed
targets met or not, then every row, the levers and what failed. Its own markers, so `make bench`
and `make bench-gpu` each rewrite only their block."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench_report import write_block

BEGIN = "<!-- bench-gpu:begin (written by scripts/bench_gpu.py; edit outside the markers) -->"
END = "<!-- bench-gpu:end -->"
TARGET_CHECKPOINT = "llava-hf/llava-1.5-7b-hf"
MFU_PEFT, MFU_FULL, BARE_RATIO = 0.45, 0.40, 0.97


def _fmt(value: Any, pattern: str = "{:.1f}") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return pattern.format(value) if isinstance(value, (int, float)) else str(value)


def _judged(report: dict[str, Any]) -> bool:
    return not report["settings"].get("tiny") and report["machine"].get("gpu") is not None


def targets(report: dict[str, Any]) -> list[list[str]]:
    """(target, measured, status) for issue 16's real-size targets (7B LLaVA shapes, one GPU)."""
    rows = [r for r in report["rows"] if r["checkpoint"] == TARGET_CHECKPOINT and r["size"] == "real"]
    failed = {f["method"]: f["error"] for f in report.get("failures", []) if f["checkpoint"] == TARGET_CHECKPOINT}
    judged = _judged(report)

    def status(met: bool) -> str:
        return ("met" if met else "**not met**") if judged else "not measured on a GPU"

    out = []
    for method, limit, what in (("lora", MFU_PEFT, "LoRA"), ("pt_lora", MFU_PEFT, "PT-LoRA"),
                                ("full", MFU_FULL, "full fine-tuning (gradient checkpointing)")):
        for row in [r for r in rows if r["method"] == method] or [None]:
            stage = f", stage {row['stage']}" if row and row["stage"] else ""
            label = f"{what}{stage} >= {limit:.0%} MFU"
            if row is None or row.get("mfu") is None:
                out.append([label, failed.get(method, "-"), "not measured"])
            else:
                out.append([label, f"{row['mfu']:.1%} ({row['tflops']:.0f} TFLOP/s)", status(row["mfu"] >= limit)])
    for row in rows:
        if row.get("ratio_vs_bare") is not None:
            stage = f" ({row['stage']})" if row["stage"] else ""
            out.append([f"{row['method']}{stage} >= {BARE_RATIO}x the bare loop", f"{row['ratio_vs_bare']:.3f}x",
                        status(row["ratio_vs_bare"] >= BARE_RATIO)])
    full = next((r for r in rows if r["method"] == "full"), None)
    card = report["machine"].get("gpu_memory_gib")
    if full is None or card is None:
        out.append(["full fine-tuning of the 7B fits one card", failed.get("full", "-"), "not measured"])
    else:
        reserved = full.get("peak_reserved_gib") or full["peak_mem_gib"]
        out.append(["full fine-tuning of the 7B fits one card",
                    f"peak {full['peak_mem_gib']:.1f} GiB allocated, {reserved:.1f} reserved of {card:.0f}",
                    status(reserved <= card)])
    return out


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *["| " + " | ".join(r) + " |" for r in rows]]


def render(report: dict[str, Any]) -> str:
    m, s = report["machine"], report["settings"]
    lines = [BEGIN, "", f"Measured {report['date']} at commit `{report['commit']}`."]
    if _judged(report):
        lines.append(f"GPU: **{m['gpu']}** ({m.get('gpu_memory_gib', 0):.0f} GiB), bf16 peak {m['peak_bf16_tflops']:.0f} "
                     f"TFLOP/s ({m['peak_source']}; a bf16 8192^3 matmul measured {m.get('measured_matmul_tflops', 0):.0f}); "
                     f"CUDA {m.get('cuda')}, torch {m['torch']}, transformers {m['transformers']}, peft {m['peft']}.")
    else:
        lines.append(f"**Not measured on a GPU**: `--tiny` on {m['cpu']} ({m['cores']} cores, {m['torch_threads']} torch thread(s)), toy-size copies of the "
                     f"checkpoints; the figures exercise the code and say nothing about GPU speed (MFU n/a). "
                     f"torch {m['torch']}, transformers {m['transformers']}, peft {m['peft']}.")
    lines += [f"Settings: {s['steps']} steps per stage and side (the first is warm-up, excluded), batch {s['batch_size']}, "
              f"{s['eval_examples']} eval examples, synthetic VQA at {s['image_size']} px, {s['repeats']} round(s), "
              f"gradient checkpointing for {', '.join(s['gc_methods']) or 'no method'}.", "",
              "### Targets (issue 16; LLaVA-1.5-7B shapes, batch 16, bf16, one GPU)", "",
              *_table(["target", "measured", "status"], targets(report)), "", "### Per checkpoint and method", "",
              "Warm figures (steps after the first); peak mem = peak GPU memory allocated on CUDA, peak RSS on CPU; "
              "ratio = ptpeft's warm samples/s over the bare loop's, same checkpoint and batches.", ""]
    header = ["checkpoint", "method", "stage", "GC", "tokens/sample", "samples/s", "tokens/s", "TFLOP/s", "MFU",
              "peak mem (GiB)", "peak reserved (GiB)", "first step (s)", "eval ex/s", "bare samples/s", "ratio"]
    lines += _table(header, [[r["checkpoint"], r["method"], _fmt(r["stage"]), _fmt(r["gradient_checkpointing"]),
                              _fmt(r["seq_len"], "{:.0f}"), _fmt(r["samples_per_s"], "{:.2f}"),
                              _fmt(r["tokens_per_s"], "{:.0f}"), _fmt(r["tflops"], "{:.3g}"), _fmt(r["mfu"], "{:.1%}"),
                              _fmt(r["peak_mem_gib"], "{:.2f}"), _fmt(r["peak_reserved_gib"], "{:.2f}"),
                              _fmt(r["time_to_first_step_s"]), _fmt(r["eval_examples_per_s"]),
                              _fmt(r["bare_samples_per_s"], "{:.2f}"), _fmt(r["ratio_vs_bare"], "{:.3f}")]
                             for r in report["rows"]])
    if report.get("levers"):
        lines += ["", "### Speed levers (ptpeft's path, lever on vs off, interleaved)", ""]
        lines += _table(["lever", "checkpoint", "method", "on", "off", "samples/s on", "samples/s off", "ratio on/off",
                         "peak GiB on / off", "first step s on / off"],
                        [[r["lever"], r["checkpoint"], r["method"], " ".join(r["on"]), " ".join(r["off"]),
                          _fmt(r["on_samples_per_s"], "{:.2f}"), _fmt(r["off_samples_per_s"], "{:.2f}"),
                          _fmt(r["ratio_on_off"], "{:.3f}"),
                          f"{_fmt(r['on_peak_mem_gib'], '{:.2f}')} / {_fmt(r['off_peak_mem_gib'], '{:.2f}')}",
                          f"{_fmt(r['on_time_to_first_step_s'])} / {_fmt(r['off_time_to_first_step_s'])}"]
                         for r in report["levers"]])
    if report.get("failures"):
        lines += ["", "Not measured:", ""]
        lines += [f"- {f['checkpoint']} {f['method']}: {f['error']}" for f in report["failures"]]
    return "\n".join([*lines, "", END])


def write_gpu_report(report: dict[str, Any], doc: Path) -> str:
    """Replace the GPU block of `doc` (added at its end the first time) and return the block."""
    block = render(report)
    write_block(doc, block, BEGIN, END)
    return block
