"""docs/benchmarks.md from a bench report: every target met or not with its figure, then the
figures per section, with the machine, the commit and how busy the machine was.

Only the block between the markers is rewritten, so hand-written notes around it survive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench_measure import Summary

BEGIN = "<!-- bench:begin (written by scripts/bench.py; edit outside the markers) -->"
END = "<!-- bench:end -->"
TRAIN_RATIO, GEN_RATIO, MEMORY_RATIO = 0.9, 10.0, 0.6
COLD_S, WARM_S, HELP_S, SVD_S = 180.0, 150.0, 1.5, 2.0
BUSY = 0.25  # other processes' cores above which a section's figures are flagged


def _summary(value: Any) -> Summary:
    return value if isinstance(value, Summary) else Summary(**value)


def _status(met: bool, tiny: bool) -> str:
    if tiny:
        return "n/a (--tiny)"
    return "met" if met else "**not met**"


def targets(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(target, measured figure, status) for every target of issue 11."""
    tiny, rows = report["tiny"], []
    for row in report["training"]:
        ratio = _summary(row["ratio"])
        rows.append((f"training throughput >= {TRAIN_RATIO}x in-memory loop: {row['method']}",
                     f"{ratio.text()}x", _status(ratio.median >= TRAIN_RATIO, tiny)))
    for key, baseline in (("ratio", "without KV cache"), ("ratio_batching_alone", "with KV cache (batching alone)")):
        ratio = _summary(report["generation"][key])
        rows.append((f"batched generation (KV cache) >= {GEN_RATIO:.0f}x per-sample {baseline}",
                     f"{ratio.text('{:.1f}')}x", _status(ratio.median >= GEN_RATIO, tiny)))
    for row in report["memory"]:
        if row["method"] in ("lora", "prefix"):
            rows.append((f"{row['method']} peak memory <= {MEMORY_RATIO}x full fine-tuning",
                         f"{row['relative_to_full']:.2f}x", _status(row["relative_to_full"] <= MEMORY_RATIO, tiny)))
    runs = {row["run"]: row["seconds"] for row in report.get("make_run", [])}
    for label, limit in (("cold", COLD_S), ("warm", WARM_S)):
        figure = f"{runs[label]:.0f} s" if label in runs else "not measured (--skip-runs)"
        status = _status(runs[label] <= limit, tiny) if label in runs else "not measured"
        rows.append((f"`make run` after install, {label} <= {limit:.0f} s", figure, status))
    help_s = _summary(report["help"])
    rows.append((f"`ptpeft --help` < {HELP_S} s", f"{help_s.text()} s", _status(help_s.median < HELP_S, tiny)))
    for row in report["svd"]:
        seconds = _summary(row["seconds"])
        rows.append((f"SVD analysis of {row['shape']} <= {SVD_S:.0f} s", f"{seconds.text('{:.3f}')} s",
                     _status(seconds.median <= SVD_S, tiny)))
    return rows


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def render(report: dict[str, Any]) -> str:
    m, settings = report["machine"], report["settings"]
    busy = {name: load for name, load in report["loads"].items()
            if (load.get("foreign_cores") or 0) > BUSY}
    lines = [BEGIN, "", f"Measured {report['date']} at commit `{report['commit']}`"
             + (" in **--tiny mode** (smoke sizes; figures are not judged)." if report["tiny"] else "."),
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['device']}"
             + (f" ({m['gpu']})" if m.get("gpu") else "")
             + f"; Python {m['python']}, torch {m['torch']} ({m['torch_threads']} threads).",
             f"Load average (1 min) at start {report['loadavg_at_start']:.2f}, at end {report['loadavg_at_end']:.2f}."]
    if busy:
        lines.append("**Shared machine:** other processes kept "
                     + ", ".join(f"{load['foreign_cores']:.1f} cores busy during {name}" for name, load in busy.items())
                     + ": absolute figures there are lower bounds; the interleaved ratios are less affected.")
    lines += ["", "## Targets", "", *_table(["target", "measured", "status"], [list(r) for r in targets(report)]), ""]
    lines += ["Two-sided figures: median (range, n) over rounds that alternate the sides (A B, B A, ...) after "
              f"{settings['warmup']} warm-up round(s); ratios are taken within a round.", "", "## Load per section", ""]
    lines += _table(["section", "wall (s)", "load avg start -> end", "other processes (cores)"],
                    [[name, f"{load['wall_s']:.0f}", f"{load['loadavg_start']:.2f} -> {load['loadavg_end']:.2f}",
                      "n/a" if load.get("foreign_cores") is None else f"{load['foreign_cores']:.2f}"]
                     for name, load in report["loads"].items()])
    lines += ["", "## 1. Training throughput", "",
              f"ptpeft's path (cached images, DataLoader, collation, `run_stage` with its logging) against a bare "
              f"AdamW loop over {settings['batch_size']}-row batches already in memory; same model, "
              f"{settings['steps']} steps per side and round. Multi-stage methods: the last stage.", ""]
    lines += _table(["method", "stage", "ratio ptpeft / in-memory", "ptpeft samples/s", "in-memory samples/s"],
                    [[r["method"], r["stage"], _summary(r["ratio"]).text(), _summary(r["ptpeft"]).text("{:.0f}"),
                      _summary(r["in_memory"]).text("{:.0f}")] for r in report["training"]])
    if report.get("workers"):
        w = report["workers"]
        lines += ["", f"DataLoader worker process (method=prefix, {settings['steps']} steps per round, the worker "
                  f"started anew each round as each epoch starts it): workers=1 / workers=0 = "
                  f"{_summary(w['ratio']).text()} ({_summary(w['workers=1']).text('{:.0f}')} vs "
                  f"{_summary(w['workers=0']).text('{:.0f}')} samples/s)."]
    g, sc = report["generation"], report["scoring"]
    same = g["identical_predictions"]
    lines += ["", "## 2. Generation and metrics", "",
              f"Greedy captions of {g['images']} eval images, shipped model: batched (eval batch {g['eval_batch_size']}, "
              "KV cache; ptpeft's path) against one image at a time, without and with the KV cache. Predictions "
              f"identical to the batched ones: {same['per_sample']}/{g['images']} (per-sample), "
              f"{same['per_sample_no_cache']}/{g['images']} (per-sample, no cache).", ""]
    lines += _table(["figure", "value"], [
        ["ratio batched / per-sample without KV cache", _summary(g["ratio"]).text("{:.1f}")],
        ["ratio batched / per-sample with KV cache", _summary(g["ratio_batching_alone"]).text("{:.1f}")],
        ["batched images/s", _summary(g["batched"]).text("{:.0f}")],
        ["per-sample images/s (KV cache)", _summary(g["per_sample"]).text("{:.1f}")],
        ["per-sample images/s (no cache)", _summary(g["per_sample_no_cache"]).text("{:.1f}")]])
    lines += ["", f"Scoring {sc['images']} images (fresh process, captioning metrics):", ""]
    lines += _table(["call", "seconds"], [[key.replace("_", " "), f"{value:.1f}"] for key, value in sc.items()
                                          if key != "images"])
    full = report["memory"][0]
    lines += ["", "## 3. Peak memory", "",
              f"One process per method, 2 training steps of a tiny LLaVA widened by config to "
              f"{full['params_total'] / 1e6:.0f}M parameters (scale `{settings['memory_scale']}`); "
              f"measure: `{full['measure']}` (peak RSS minus the RSS after imports on CPU).", ""]
    lines += _table(["method", "trainable params", "peak RSS (MiB)", "measure (MiB)", "relative to full"],
                    [[r["method"], f"{r['params_trainable']:,}", f"{r['peak_rss_mib']:.0f}", f"{r[r['measure']]:.0f}",
                      f"{r['relative_to_full']:.2f}"] for r in report["memory"]])
    lines += ["", "## 4. Wall times", "", f"`ptpeft --help`: {_summary(report['help']).text()} s.", ""]
    lines += _table(["SVD analysis (`spectrum_metrics`)", "seconds", "threads"],
                    [[r["shape"], _summary(r["seconds"]).text("{:.3f}"), str(r["threads"])] for r in report["svd"]])
    if report.get("make_run"):
        keys = sorted({k for row in report["make_run"] for k in row["breakdown"]})
        lines += ["", "`ptpeft train` with the defaults (as `make run` after install; W&B offline). Cold: fresh "
                  "world dir; warm: world and image cache present, fresh outputs (no stage cache). "
                  "`other` = process wall time not in a section (imports, Hydra, W&B, saving).", ""]
        lines += _table(["run", "wall (s)", *keys, "other"],
                        [[r["run"], f"{r['seconds']:.0f}", *[f"{r['breakdown'].get(k, 0):.1f}" for k in keys],
                          f"{r['seconds'] - r['breakdown'].get('total_s', 0):.1f}"] for r in report["make_run"]])
    if "paper_quick_s" in report:
        lines += ["", f"`make paper-quick`: {report['paper_quick_s']:.0f} s."]
    return "\n".join([*lines, "", END])


def write_block(doc: Path, block: str, begin: str, end: str) -> None:
    """Replace what lies between `begin` and `end` in `doc` with `block` (which carries the
    markers); a doc without them gets the block added at its end, a new doc a title first."""
    old = doc.read_text() if doc.exists() else ""
    if begin in old and end in old:
        text = old[: old.index(begin)] + block + old[old.index(end) + len(end):]
    elif old:
        text = old.rstrip("\n") + "\n\n" + block + "\n"
    else:
        text = "# Benchmarks\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def write_report(report: dict[str, Any], doc: Path) -> str:
    """Replace the marked block of `doc` (or write a new file) and return the block."""
    block = render(report)
    write_block(doc, block, BEGIN, END)
    return block
