"""The worked examples of the batch-size and data-parallel pages, against independent
estimates and a simulation."""

from __future__ import annotations

import numpy as np
import pytest


def test_noise_scale_agrees_with_the_two_batch_size_estimator(page):
    """McCandlish et al.'s estimator from mean squared gradient norms at two batch sizes:
    E|G_B|^2 = |G|^2 + tr(Sigma)/B, with batches drawn with replacement."""
    example = page("methods/batch-size.md")["batch"]
    x, y, w = example["x"], example["y"], example["w"]
    rng = np.random.default_rng(1)

    def mean_squared_norm(batch, draws=4000):
        rows = rng.integers(0, len(x), size=(draws, batch))
        residual = np.einsum("dbi,i->db", x[rows], w) - y[rows]
        gradients = 2 * np.einsum("db,dbi->di", residual, x[rows]) / batch
        return np.mean(np.sum(gradients**2, axis=1))

    small, big = 8, 256
    small_norm, big_norm = mean_squared_norm(small), mean_squared_norm(big)
    gradient_squared = (big * big_norm - small * small_norm) / (big - small)
    trace = (small_norm - big_norm) / (1 / small - 1 / big)
    assert gradient_squared == pytest.approx(example["G"] @ example["G"], rel=0.1)
    assert trace == pytest.approx(example["trace_sigma"], rel=0.1)
    assert trace / gradient_squared == pytest.approx(example["noise_scale"], rel=0.15)


def test_linear_scaling_gap_is_the_second_order_term(page):
    """k small steps minus one large step = lr^2 sum_j H_j sum_{i<j} g_i + O(lr^3)."""
    example = page("methods/batch-size.md")["batch"]
    x, w, batches = example["x"], example["w"], example["batches"]
    gradient = example["gradient"]
    gradients = [gradient(w, rows) for rows in batches]
    hessians = [2 * x[rows].T @ x[rows] / len(rows) for rows in batches]
    second_order = sum(
        hessians[j] @ sum(gradients[:j], np.zeros_like(w)) for j in range(1, len(batches))
    )
    for lr, gap in zip((0.01, 0.005), example["gaps"], strict=True):
        assert gap == pytest.approx(lr**2 * np.linalg.norm(second_order), rel=0.1)


def ring_allreduce(gradients):
    """A literal ring all-reduce: reduce-scatter then all-gather, one chunk per step."""
    workers = len(gradients)
    chunks = [np.array_split(g.astype(float), workers) for g in gradients]
    sent = [0] * workers
    for phase in ("reduce-scatter", "all-gather"):
        for step in range(workers - 1):
            offset = -step if phase == "reduce-scatter" else 1 - step
            messages = [
                (i, (i + offset) % workers, chunks[i][(i + offset) % workers].copy())
                for i in range(workers)
            ]
            for sender, chunk, data in messages:
                receiver = (sender + 1) % workers
                if phase == "reduce-scatter":
                    chunks[receiver][chunk] += data
                else:
                    chunks[receiver][chunk] = data
                sent[sender] += data.size
    return [np.concatenate(c) for c in chunks], sent


def test_ring_all_reduce_traffic_matches_the_formula(page):
    example = page("methods/data-parallel.md")["parallel"]
    workers, size = example["workers"], 8 * 1000
    rng = np.random.default_rng(0)
    gradients = [rng.standard_normal(size) for _ in range(workers)]
    results, sent = ring_allreduce(gradients)
    for result in results:
        np.testing.assert_allclose(result, np.sum(gradients, axis=0), rtol=1e-12)
    share = example["ring_per_worker"] / example["size"]
    assert all(s / size == pytest.approx(share) for s in sent)


def test_parameter_server_link_carries_every_gradient(page):
    example = page("methods/data-parallel.md")["parallel"]
    workers, size = example["workers"], 8 * 1000
    rng = np.random.default_rng(0)
    gradients = [rng.standard_normal(size) for _ in range(workers)]
    into_server = sum(g.size for g in gradients)  # every worker pushes its whole gradient
    average = np.mean(gradients, axis=0)
    out_of_server = workers * average.size  # and pulls the new parameters
    assert into_server / size == out_of_server / size == example["server_link"] / example["size"]
