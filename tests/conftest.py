import pytest
import torch


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                             reason="CUDA not available"))])
def device(request) -> torch.device:
    """Each test that takes `device` runs on the CPU and, when present, on CUDA."""
    return torch.device(request.param)
