"""contrastkit: contrastive representation learning for PyTorch.

Exact, memory-bounded contrastive losses behind one API, batched views, small encoders, a training loop
and evaluation (kNN, linear probe) of frozen features.
"""

from contrastkit import losses

__all__ = ["__version__", "losses"]
__version__ = "0.1.0"
