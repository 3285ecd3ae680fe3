"""Token attributions (captum's layer integrated gradients on the input embeddings): which
input tokens drive a probe's score, an embedding similarity, or a next-token logit.

Examples:
    >>> from workbench.attribution import attribute_next_token
    >>> attr = attribute_next_token(lm, "The capital of France is", " Paris")  # doctest: +SKIP
    >>> attr.top(3), attr.delta  # doctest: +SKIP
"""

from ._converge import attribute_until_converged, worst_delta
from ._core import Attribution, AttributionInputError, TargetTokenError, TokenIndexError
from ._verbs import attribute_next_token, attribute_probe, attribute_similarity

__all__ = [
    "Attribution",
    "AttributionInputError",
    "TargetTokenError",
    "TokenIndexError",
    "attribute_next_token",
    "attribute_probe",
    "attribute_similarity",
    "attribute_until_converged",
    "worst_delta",
]
