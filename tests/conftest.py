import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from auditor.io import read_dataset

TRUTH = Path(__file__).resolve().parents[1] / "sample_data" / "truth"


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                             reason="CUDA not available"))])
def device(request) -> torch.device:
    """Each test that takes `device` runs on the CPU and, when present, on CUDA."""
    return torch.device(request.param)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A small audit directory written directly (tests/audit_fixture.py), once per module: (dataset, audit dir)."""
    from audit_fixture import build_audit

    return build_audit(tmp_path_factory.mktemp("base"))


@pytest.fixture
def audit(base, tmp_path):
    """A fresh copy of `base`'s audit directory for one test."""
    shutil.copytree(base[1], tmp_path / "audit")
    return tmp_path / "audit"


@pytest.fixture(scope="module")
def truth():
    """The first 120 of the sample set's true labels (no planted noise)."""
    return read_dataset(TRUTH).subset(np.arange(120))
