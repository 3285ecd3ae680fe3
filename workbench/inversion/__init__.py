"""Decoding back to text: logit/tuned lens and Patchscopes for hidden states, and inverters
(guided decoding, trained soft-prompt inverters, iterative correction) for sentence embeddings."""

# Inverting sentence embeddings (embedders, metrics, guided / trained / hybrid, leakage).
from .correction import GuidedCorrector, HybridInverter, TrainedCorrector  # noqa: E402, F401, I001
from .embedders import (  # noqa: E402, F401
    Embedder,
    EmbeddingInputError,
    ModelEmbedder,
    load_embedder,
)
from .guided import GuidedInverter, InversionResult  # noqa: E402, F401
from .leakage import LeakageReport, leakage_report  # noqa: E402, F401
from .metrics import evaluate as evaluate_inversion  # noqa: E402, F401
from .trained import (  # noqa: E402, F401
    CheckpointMismatchError,
    InverterConfig,
    SoftPrefixInverter,
    SoftPromptModel,
)

# Decoding hidden states (logit lens, tuned lens, Patchscopes).
from .lens import LensResult, LogitLens, TargetTokenError, logit_lens  # noqa: E402, F401
from .patchscopes import IDENTITY_PROMPT, Patchscope, PatchscopeResult  # noqa: E402, F401
from .tuned_lens import LensCheckpointError, LensReport, TunedLens, lens_report  # noqa: E402, F401
