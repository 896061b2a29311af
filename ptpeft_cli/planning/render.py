"""A plan as text: one table row per job stage, then the totals and what to change where a job does
not fit. Markdown, so the output pastes into docs and issues as it is."""

from __future__ import annotations

from ptpeft_cli.planning.estimate import USABLE
from ptpeft_cli.planning.plan import SLURM_MARGIN, JobPlan, Plan
from ptpeft_cli.tables import markdown_table

MARK = {"measured": "m", "scaled": "s", "extrapolated": "e"}


def _jobs(count: int) -> str:
    return f"{count} job{'' if count == 1 else 's'}"


def _num(value: float | None, digits: int = 1) -> str:
    return "?" if value is None else f"{value:,.{digits}f}"


def _rows(job: JobPlan) -> list[list[str]]:
    eval_h = None if job.eval_seconds is None or job.extra_seconds is None else (job.eval_seconds + job.extra_seconds) / 3600
    head = [str(job.index), job.label, str(job.seed)]
    if not job.stages:
        return [head + ["-", "-", "-", "-", "-", "-", _num(eval_h, 2), _num(job.gpu_hours, 2)]]
    rows = []
    for n, stage in enumerate(job.stages):
        last = n == len(job.stages) - 1
        lead = head if n == 0 else ["", "", ""]
        if stage.cached_from is not None:
            rows.append(lead + [stage.name, f"cached (job {stage.cached_from})", "", "", "", "0",
                                _num(eval_h, 2) if last else "", _num(job.gpu_hours, 2) if last else ""])
            continue
        rate = "?" if stage.rate is None else f"{stage.rate.value:.1f} {MARK.get(stage.rate.source, '')}"
        rows.append(lead + [stage.name, f"{stage.samples:,}", _num(stage.memory.value),
                            "yes" if stage.fits else "**no**", rate, _num(None if stage.seconds is None
                                                                        else stage.seconds / 3600, 2),
                            _num(eval_h, 2) if last else "", _num(job.gpu_hours, 2) if last else ""])
    return rows


def render(plan: Plan, title: str = "") -> str:
    jobs, shape = plan.jobs, plan.shapes
    layouts = sorted({(j.gpu.name, j.gpus, j.micro, j.grad_accum, j.checkpointing) for j in jobs})
    lines = [f"ptpeft plan{': ' + title if title else ''}: {_jobs(len(jobs))}; {shape.checkpoint} "
             f"({shape.family}, {shape.total_params / 1e9:.2f} B parameters)",
             f"sequence: {plan.seq} positions per sample ({shape.image_tokens} image + {plan.text_tokens} text)"]
    for card, gpus, micro, accum, ckpt in layouts:
        gpu = next(j.gpu for j in jobs if j.gpu.name == card)
        lines.append(f"card: {gpus} x {card} per job ({gpu.memory_gib:g} GiB, {gpu.bf16_tflops:g} TFLOP/s bf16 dense); "
                     f"global batch {micro * gpus * accum} = {micro} per GPU x {gpus} GPU x {accum} accumulated; "
                     f"gradient checkpointing {'on' if ckpt else 'off'}")
    lines += [f"note: {note}" for note in plan.notes] + [""]
    header = ["job", "method", "seed", "stage", "samples", "GiB/GPU", "fits", "samples/s/GPU", "train h", "eval h",
              "GPU-h"]
    lines.append(markdown_table(header, [row for job in jobs for row in _rows(job)]))
    lines += ["", *summary(plan)]
    return "\n".join(lines)


def summary(plan: Plan) -> list[str]:
    """Totals, the SLURM time limit, and the changes that would make every job fit."""
    jobs, known = plan.jobs, plan.known
    total, wall, longest = plan.gpu_hours, plan.sequential_hours, plan.longest_hours
    extrapolated = sum(j.gpu_hours for j in known if j.extrapolated)
    out = [f"total: {total:,.1f} GPU-hours for {_jobs(len(jobs))} ({extrapolated:,.1f} of them on throughput not "
           f"measured on this card); one job after another: {wall:,.1f} h ({wall / 24:.1f} days) on "
           f"{jobs[0].gpus} GPU{'s' if jobs[0].gpus > 1 else ''}; longest job {longest:.1f} h"]
    if len(known) < len(jobs):
        out.append(f"unknown: {len(jobs) - len(known)} jobs have no estimate (no measured throughput to start from, "
                   "or an eval split of unknown size: set task.eval_limit)")
    if longest:
        out.append(f"SLURM: hydra.launcher.timeout_min={plan.slurm_timeout_min} covers the "
                   f"longest job with {round(100 * (SLURM_MARGIN - 1))}% to spare")
    cached = [s for j in jobs for s in j.stages if s.cached_from is not None]
    if cached:
        again = sum(_trained_alone(plan, j.index, s.name) for j in jobs for s in j.stages if s.cached_from is not None)
        out.append(f"stage cache: {len(cached)} stage{'s' if len(cached) > 1 else ''} reuse an earlier job's (PT-Adapter's prefix stage from PT-LoRA's "
                   f"of the same seed) when that job finished first, as in a sequential sweep; jobs running at the "
                   f"same time train it again: +{again:,.1f} GPU-hours")
    for job, stage in plan.misfits:
        out.append(f"does not fit: job {job.index} ({job.label}, {stage.name}) needs {stage.memory.value:.1f} GiB of "
                   f"{USABLE:.0%} x {job.gpu.memory_gib:g}; fix: {stage.fix}")
    out += _faster(jobs)
    sources = sorted({f"{MARK[s.rate.source]}: {s.rate.note}" for j in jobs for s in j.stages
                      if s.rate is not None and s.cached_from is None})
    out += ["", "samples/s: m measured on this card, s measured on another card and scaled by bf16 peak, "
            "e extrapolated (docs/reproduce.md, 'How the planner estimates'):", *[f"- {s}" for s in sources]]
    return out


def _faster(jobs: list[JobPlan]) -> list[str]:
    """One command for the jobs that also fit without gradient checkpointing, and what it saves."""
    light = [j for j in jobs if j.checkpointing and j.stages and all(
        s.lighter is not None for s in j.stages if s.cached_from is None)]
    if not light:
        return []
    micro = min(s.lighter.micro for j in light for s in j.stages if s.cached_from is None)
    gib = max(s.lighter.gib for j in light for s in j.stages if s.cached_from is None)
    saved = sum((s.seconds - s.lighter.seconds) * j.gpus for j in light for s in j.stages
                if s.cached_from is None and s.seconds is not None and s.lighter.seconds is not None) / 3600
    gpus, effective = light[0].gpus, light[0].micro * light[0].gpus * light[0].grad_accum
    methods = ",".join(dict.fromkeys(j.method for j in light))
    layout = "" if micro == light[0].micro else \
        f" trainer.batch_size={micro * gpus} trainer.grad_accum={effective // (micro * gpus)}"
    labels = ", ".join(dict.fromkeys(j.label for j in light))
    return [f"faster: the jobs of {labels} also fit without gradient checkpointing at {micro} "
            f"per GPU (at most {gib:.1f} GiB): `method={methods} model.gradient_checkpointing=false{layout}` "
            f"saves about {saved:,.1f} GPU-hours (by FLOPs)"]


def _trained_alone(plan: Plan, job: int, stage: str) -> float:
    """GPU-hours of a cached stage if it were trained: the serving job's same stage."""
    served = next(s for s in plan.jobs[job].stages if s.name == stage)
    source = next(s for s in plan.jobs[served.cached_from].stages if s.name == stage)
    return 0.0 if source.seconds is None else source.seconds * plan.jobs[job].gpus / 3600
