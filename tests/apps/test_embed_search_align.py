"""The DNA read simulator and the k-mer index baseline of the embed_search_align app."""

from __future__ import annotations

import numpy as np

from contrastkit.apps.embed_search_align import (
    KmerIndex,
    mutate_read,
    one_hot,
    random_genome,
    sample_reads,
    window_starts,
)


def test_error_free_reads_are_exact_copies() -> None:
    rng = np.random.default_rng(0)
    genome = random_genome(500, rng)
    read = mutate_read(genome[100:180], 0.0, 64, rng)
    assert np.array_equal(read, genome[100:164])


def test_error_rate_changes_about_that_share_of_bases() -> None:
    rng = np.random.default_rng(1)
    genome = random_genome(20_000, rng)
    reads, starts = sample_reads(genome, 1000, 64, np.full(1000, 0.1), rng)
    assert reads.shape == (1000, 64) and reads.min() >= 0 and reads.max() <= 3
    # the first base differs after a substitution (1/2 of the errors) or a deletion (1/4, then the
    # next base differs with probability 3/4): 0.1 * (0.5 + 0.25 * 0.75) = 0.069
    first = np.mean(reads[:, 0] != genome[starts])
    assert 0.04 < first < 0.10
    # later bases also drift after insertions and deletions: more of them differ
    assert np.mean(reads[:, 40] != genome[starts + 40]) > first


def test_kmer_index_places_error_free_and_noisy_reads() -> None:
    rng = np.random.default_rng(2)
    genome = random_genome(5_000, rng)
    index = KmerIndex(genome, 10)
    assert index.align(genome[1234:1298]) == 1234
    noisy = genome[3000:3064].copy()
    noisy[[5, 20, 40]] = (noisy[[5, 20, 40]] + 1) % 4
    assert index.align(noisy) == 3000
    assert index.align(np.zeros(5, dtype=np.int64)) == -1  # shorter than k: no seed


def test_one_hot_and_window_grid() -> None:
    x = one_hot(np.array([[0, 1, 2, 3, 3]]))
    assert x.shape == (1, 4, 5)
    assert x.sum(dim=1).eq(1).all() and x[0, 3, 4] == 1
    starts = window_starts(100, 64, 16)
    assert starts.tolist() == [0, 16, 32]
