"""Singular-value spectrum of a representation matrix and the ranks PT-PEFT reports.

The paper's claim is that prefix-tuning preserves the pretrained representation space while
fine-tuning/LoRA/adapters collapse it; the measurements here make that comparable across runs:
effective rank (Roy & Vetterli, 2007) and the number of singular values holding 90% / 99% of the
singular-value mass, for a tuned model and its pretrained base on the same inputs.

All math is float64: the tail of a spectrum (where collapse shows) is lost in float32 sums.
A zero matrix (all singular values 0) has no distribution to take the entropy of; it is given
effective rank 0 and rank90/rank99 0 (its rank), and a ratio against a zero base is NaN.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Relative slack when comparing cumulative mass with a fraction: cumsum/total can land one ulp
# below the fraction it exactly represents (e.g. a fraction of 1.0).
_MASS_TOLERANCE = 1e-12


def singular_values(matrix: Tensor, center: bool) -> Tensor:
    """Singular values (descending, float64) of a rows x dim matrix; centring removes the
    column mean so a shared offset of all rows does not count as one more direction."""
    if matrix.ndim != 2:
        raise ValueError(f"expected a 2-D (rows x dim) matrix, got shape {tuple(matrix.shape)}")
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(f"cannot take the spectrum of an empty matrix {tuple(matrix.shape)}")
    values = matrix.detach().to(device="cpu", dtype=torch.float64)
    if center:
        values = values - values.mean(dim=0, keepdim=True)
    return torch.linalg.svdvals(values)


def _mass(s: Tensor) -> Tensor:
    """Singular values as float64, validated as a non-negative 1-D spectrum."""
    s = torch.as_tensor(s, dtype=torch.float64).detach().cpu()
    if s.ndim != 1 or s.numel() == 0:
        raise ValueError(f"expected a non-empty 1-D spectrum, got shape {tuple(s.shape)}")
    if bool((s < 0).any()):
        raise ValueError("singular values must be non-negative")
    return s


def effective_rank(s: Tensor) -> float:
    """exp of the Shannon entropy of p_i = s_i / sum(s), with 0 log 0 = 0 (Roy & Vetterli).
    A zero spectrum returns 0.0 (see the module docstring)."""
    s = _mass(s)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total
    entropy = -torch.special.xlogy(p, p).sum()
    return float(torch.exp(entropy))


def rank_at(s: Tensor, fraction: float) -> int:
    """Smallest k with sum(s[:k]) / sum(s) >= fraction (s sorted descending); 0 for a zero
    spectrum."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    s = _mass(s)
    total = s.sum()
    if total <= 0:
        return 0
    cumulative = torch.cumsum(s, dim=0) / total
    reached = cumulative >= fraction - _MASS_TOLERANCE
    return int(torch.nonzero(reached)[0, 0]) + 1


def spectrum_metrics(matrix: Tensor, center: bool) -> dict:
    """Everything representation.json stores for one matrix (JSON-ready plain types)."""
    s = singular_values(matrix, center)
    return {
        "effective_rank": effective_rank(s),
        "rank90": rank_at(s, 0.90),
        "rank99": rank_at(s, 0.99),
        "n_rows": int(matrix.shape[0]),
        "dim": int(matrix.shape[1]),
        "singular_values": s.tolist(),
    }


def _ratio(tuned: float, base: float) -> float:
    return float(tuned) / float(base) if base else math.nan


def compare(tuned: dict, base: dict) -> dict:
    """tuned / base for each rank measure (the paper's 'representation preserved' ratio)."""
    return {
        f"{key}_ratio": _ratio(tuned[key], base[key])
        for key in ("effective_rank", "rank90", "rank99")
    }
