"""Lenses: read a decoder's hidden states as next-token distributions or words.

- ``LogitLens`` / ``logit_lens`` (``logit.py``): every layer through the model's final norm and
  unembedding;
- ``TunedLens`` / ``lens_report`` (``tuned.py``): the same with a trained affine translator per
  layer;
- ``Patchscope`` (``patchscopes.py``): patch a hidden state into a prompt and let the model say
  what it holds.

Inverting sentence embeddings back to text is ``workbench.inversion``.

>>> from workbench.lens import LogitLens                                   # doctest: +SKIP
>>> LogitLens(lm).run("The capital of France is", k=5, target=" Paris")    # doctest: +SKIP
"""

from ..errors import TargetTokenError
from .logit import LensResult, LogitLens, logit_lens
from .patchscopes import IDENTITY_PROMPT, Patchscope, PatchscopeResult
from .tuned import LensCheckpointError, LensReport, TunedLens, lens_report

__all__ = [
    "IDENTITY_PROMPT",
    "LensCheckpointError",
    "LensReport",
    "LensResult",
    "LogitLens",
    "Patchscope",
    "PatchscopeResult",
    "TargetTokenError",
    "TunedLens",
    "lens_report",
    "logit_lens",
]
