"""landmark-auditor: find wrong facial-landmark labels with Semantic Alignment (Liu et al., CVPR 2019)."""

__version__ = "0.1.0"
