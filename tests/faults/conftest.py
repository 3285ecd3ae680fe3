"""Fixtures of the fault-injection suite: the tiny random Llama and a 12-shard reference run."""

from __future__ import annotations

import pytest
from faultkit import OPTIONS, TEXTS

import workbench


@pytest.fixture(scope="module")
def fault_model(tiny_llama):
    """The tiny random Llama of tests/conftest.py (3 blocks, d_model 32)."""
    return tiny_llama


@pytest.fixture(scope="module")
def reference(fault_model, tmp_path_factory):
    """An uninterrupted run: what every faulted-then-resumed run must equal byte for byte."""
    return workbench.extract(
        fault_model, TEXTS, out=tmp_path_factory.mktemp("ref") / "run", **OPTIONS
    )
