"""Sentence embeddings back to text: embedders, inverters (guided decoding, trained soft-prompt
inverters, iterative correction), metrics and leakage reports.

The lenses (logit, tuned, Patchscopes), which read hidden states, are ``workbench.lens``; their
names stay importable from here as before."""

# Inverting sentence embeddings (embedders, metrics, guided / trained / hybrid, leakage).
from .correction import GuidedCorrector, HybridInverter, TrainedCorrector  # noqa: E402, F401, I001
from .embedders import (  # noqa: E402, F401
    Embedder,
    EmbedderSpec,
    EmbedderSpecError,
    SentenceTransformerEmbedder,
    load_proposer,
    parse_embedder_spec,
    EmbeddingInputError,
    ModelEmbedder,
    load_embedder,
)
from .guided import GuidedInverter, InversionResult  # noqa: E402, F401
from .leakage import LeakageMismatchError, LeakageReport, leakage_report  # noqa: E402, F401
from .metrics import evaluate as evaluate_inversion  # noqa: E402, F401
from .trained import (  # noqa: E402, F401
    CheckpointMismatchError,
    InverterConfig,
    SoftPrefixInverter,
    SoftPromptModel,
)

# Decoding hidden states: workbench.lens (these names are kept here for existing code).
from ..lens import (  # noqa: E402, F401
    IDENTITY_PROMPT,
    LensCheckpointError,
    LensReport,
    LensResult,
    LogitLens,
    Patchscope,
    PatchscopeResult,
    TargetTokenError,
    TunedLens,
    lens_report,
    logit_lens,
)
