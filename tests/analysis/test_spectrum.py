"""Exact values of the spectrum measures on matrices whose spectrum is known by hand."""

from __future__ import annotations

import math

import pytest
import torch

from ptpeft_cli.analysis.spectrum import (
    compare,
    effective_rank,
    rank_at,
    singular_values,
    spectrum_metrics,
)


def test_identity_uncentred_has_full_effective_rank() -> None:
    metrics = spectrum_metrics(torch.eye(10), center=False)
    assert metrics["effective_rank"] == pytest.approx(10.0, abs=1e-12)
    assert metrics["rank90"] == 9
    assert metrics["rank99"] == 10
    assert metrics["n_rows"] == 10 and metrics["dim"] == 10
    assert metrics["singular_values"] == pytest.approx([1.0] * 10)


def test_rank_one_matrix_has_effective_rank_one() -> None:
    generator = torch.Generator().manual_seed(0)
    u = torch.randn(50, 1, dtype=torch.float64, generator=generator)
    v = torch.randn(1, 16, dtype=torch.float64, generator=generator)
    metrics = spectrum_metrics(u @ v, center=False)
    assert metrics["effective_rank"] == pytest.approx(1.0, abs=1e-9)
    assert metrics["rank90"] == 1 and metrics["rank99"] == 1


def test_known_spectrum_matches_hand_computed_entropy() -> None:
    # Rotations on both sides keep the spectrum (4, 3, 2, 1) but make the matrix dense.
    generator = torch.Generator().manual_seed(1)
    left, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64, generator=generator))
    right, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64, generator=generator))
    diagonal = torch.zeros(6, 4, dtype=torch.float64)
    diagonal[range(4), range(4)] = torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64)
    matrix = left @ diagonal @ right
    s = singular_values(matrix, center=False)
    assert s.dtype == torch.float64
    assert s.tolist() == pytest.approx([4.0, 3.0, 2.0, 1.0], abs=1e-12)
    p = [0.4, 0.3, 0.2, 0.1]
    expected = math.exp(-sum(pi * math.log(pi) for pi in p))
    assert effective_rank(s) == pytest.approx(expected, rel=1e-12)
    assert effective_rank(s) == pytest.approx(3.5961, abs=1e-4)


def test_zero_singular_values_contribute_nothing() -> None:
    s = torch.tensor([2.0, 2.0, 0.0, 0.0])
    assert effective_rank(s) == pytest.approx(2.0, abs=1e-12)


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [(0.3, 1), (0.4, 1), (0.5, 2), (0.7, 2), (0.9, 3), (0.95, 4), (1.0, 4)],
)
def test_rank_at_known_spectrum(fraction: float, expected: int) -> None:
    # Cumulative mass of (4, 3, 2, 1): 0.4, 0.7, 0.9, 1.0; boundaries count as reached.
    assert rank_at(torch.tensor([4.0, 3.0, 2.0, 1.0]), fraction) == expected


def test_rank_at_rejects_fraction_outside_unit_interval() -> None:
    with pytest.raises(ValueError):
        rank_at(torch.tensor([1.0]), 0.0)
    with pytest.raises(ValueError):
        rank_at(torch.tensor([1.0]), 1.5)


def test_zero_matrix_is_rank_zero_and_ratio_against_it_is_nan() -> None:
    zero = spectrum_metrics(torch.zeros(5, 3), center=False)
    assert zero["effective_rank"] == 0.0
    assert zero["rank90"] == 0 and zero["rank99"] == 0
    ratios = compare(spectrum_metrics(torch.eye(3), center=False), zero)
    assert all(math.isnan(value) for value in ratios.values())


def test_centering_removes_a_shared_offset() -> None:
    generator = torch.Generator().manual_seed(2)
    data = torch.randn(40, 6, dtype=torch.float64, generator=generator)
    centred = data - data.mean(dim=0)
    shifted = centred + 100.0 * torch.ones(1, 6, dtype=torch.float64)
    assert singular_values(shifted, center=True).tolist() == pytest.approx(
        singular_values(centred, center=False).tolist(), abs=1e-9
    )
    # Uncentred, the offset dominates: one direction holds most of the mass.
    assert effective_rank(singular_values(shifted, center=False)) < 1.5
    # Identical rows are a single point: nothing is left after centring.
    assert spectrum_metrics(torch.ones(7, 4), center=True)["effective_rank"] == 0.0


def test_compare_gives_tuned_over_base() -> None:
    tuned = {"effective_rank": 3.0, "rank90": 2, "rank99": 5}
    base = {"effective_rank": 6.0, "rank90": 4, "rank99": 5}
    assert compare(tuned, base) == {
        "effective_rank_ratio": 0.5,
        "rank90_ratio": 0.5,
        "rank99_ratio": 1.0,
    }


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError):
        singular_values(torch.ones(3), center=False)
    with pytest.raises(ValueError):
        singular_values(torch.ones(0, 4), center=False)
    with pytest.raises(ValueError):
        effective_rank(torch.tensor([1.0, -1.0]))
