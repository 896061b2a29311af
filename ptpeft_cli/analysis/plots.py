"""Spectrum plots: normalised singular values and cumulative singular-value mass.

Built on `matplotlib.figure.Figure` (Agg canvas) rather than pyplot, so plotting never touches a
global backend or figure registry: safe in headless jobs and in parallel sweep workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ptpeft_cli.analysis.spectrum import rank_at

MASS_MARKS = (0.90, 0.99)


@dataclass(frozen=True)
class SpectrumCurve:
    """One spectrum to draw; `dashed` marks a pretrained base."""

    label: str
    singular_values: Sequence[float]
    dashed: bool = False


def _draw(ax_spectrum: Axes, ax_mass: Axes, curves: Sequence[SpectrumCurve]) -> None:
    """Left: s_i / s_1 on a log scale (zeros left out: log scale cannot show them).
    Right: cumulative mass with the 90% / 99% levels and where each curve reaches them."""
    for curve in curves:
        s = torch.as_tensor(curve.singular_values, dtype=torch.float64)
        style = "--" if curve.dashed else "-"
        index = torch.arange(1, s.numel() + 1)
        total = float(s.sum())
        if total <= 0:
            continue
        positive = s > 0
        (line,) = ax_spectrum.plot(
            index[positive], (s / s[0])[positive], style, label=curve.label, linewidth=1.4
        )
        mass = torch.cumsum(s, dim=0) / total
        ax_mass.plot(index, mass, style, color=line.get_color(), label=curve.label, linewidth=1.4)
        for fraction in MASS_MARKS:
            k = rank_at(s, fraction)
            ax_mass.plot([k], [float(mass[k - 1])], "o", color=line.get_color(), markersize=4)
    for fraction in MASS_MARKS:
        ax_mass.axhline(fraction, color="grey", linestyle=":", linewidth=1)
        ax_mass.annotate(
            f"{fraction:.0%}",
            xy=(1.0, fraction),
            xycoords=("axes fraction", "data"),
            xytext=(-4, -10),
            textcoords="offset points",
            ha="right",
            fontsize=8,
            color="grey",
        )
    ax_spectrum.set_yscale("log")
    ax_spectrum.set_xlabel("singular value index i")
    ax_spectrum.set_ylabel("normalised singular value s_i / s_1")
    ax_mass.set_xlabel("number of singular values k")
    ax_mass.set_ylabel("cumulative singular-value mass")
    ax_mass.set_ylim(0.0, 1.02)
    for ax in (ax_spectrum, ax_mass):
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)


def save_spectrum_figure(rows: dict[str, Sequence[SpectrumCurve]], path: Path, title: str) -> Path:
    """One row of (spectrum, cumulative mass) panels per entry of `rows` (e.g. per layer),
    saved as PNG at `path`."""
    if not rows:
        raise ValueError("nothing to plot")
    figure = Figure(figsize=(11, 4 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), 2, squeeze=False)
    for (row_name, curves), (ax_spectrum, ax_mass) in zip(rows.items(), axes, strict=True):
        _draw(ax_spectrum, ax_mass, curves)
        ax_spectrum.set_title(f"{row_name}: spectrum", fontsize=10)
        ax_mass.set_title(f"{row_name}: cumulative mass", fontsize=10)
    figure.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path
