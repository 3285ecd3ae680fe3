"""``workbench.settings``: folders from the environment, threads and seeds that restore."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_info

from workbench import settings


def test_folders_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(settings.RUNS_ENV, raising=False)
    monkeypatch.delenv(settings.CACHE_ENV, raising=False)
    assert settings.runs_dir() == Path("runs")
    assert settings.cache_dir() == Path.home() / ".cache" / "workbench"
    monkeypatch.setenv(settings.RUNS_ENV, str(tmp_path / "r"))
    monkeypatch.setenv(settings.CACHE_ENV, str(tmp_path / "c"))
    assert settings.runs_dir() == tmp_path / "r"
    assert settings.cache_dir() == tmp_path / "c"


def test_threads_are_restored_also_after_an_error():
    before = torch.get_num_threads()
    blas_before = [p["num_threads"] for p in threadpool_info()]
    target = 2 if before == 1 else 1
    with pytest.raises(RuntimeError), settings.threads(target) as n:
        assert n == target == torch.get_num_threads()
        assert all(p["num_threads"] == target for p in threadpool_info())
        raise RuntimeError
    assert torch.get_num_threads() == before
    assert [p["num_threads"] for p in threadpool_info()] == blas_before
    with settings.threads(None) as n:
        assert n == before
    with pytest.raises(ValueError, match="threads=0"), settings.threads(0):
        pass


def test_seeded_is_reproducible_and_leaves_the_global_stream_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    with settings.seeded(7):
        a = torch.nn.Linear(4, 4).weight.detach().clone()
    assert torch.equal(torch.rand(3), expected_next)  # as if seeded() had not run
    with settings.seeded(7):
        b = torch.nn.Linear(4, 4).weight.detach().clone()
    assert torch.equal(a, b)
    g1, g2 = settings.generator(5), settings.generator(5)
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))
