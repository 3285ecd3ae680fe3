"""``load_model``: a bundled name, a hub id, a local folder or a ``.gguf`` file, one result type."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from ..artifacts import file_sha256
from ..errors import LayerOutOfRangeError, UnknownHookPointError, UnknownModelError
from ..settings import cache_dir, seeded
from . import hook_names
from ._bundled import BUNDLED
from ._structure import (
    ATTENTION_NAMES,
    MLP_NAMES,
    find_blocks,
    find_child,
    has_final_norm,
    sublayer_output,
)

log = logging.getLogger(__name__)

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[dtype.lower()]
    except KeyError:
        from ..errors import OptionError, arg

        raise OptionError(
            f"unknown {arg('dtype', '--dtype')} {dtype!r}: use one of {sorted(_DTYPES)}"
        ) from None


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``, refused in one line if it is malformed or absent here."""
    from ..errors import OptionError, arg

    flag = arg("device", "--device")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise OptionError(
            f"{flag} {device!r} is not a device: use 'cpu', 'cuda', 'cuda:1' or 'mps'"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise OptionError(
                f"{flag} {device!r}: CUDA is not available on this machine (torch "
                f"{torch.__version__}); use {arg('device=' + repr('cpu'), '--device cpu')}"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise OptionError(
                f"{flag} {device!r}: this machine has {torch.cuda.device_count()} "
                "CUDA device(s), numbered from 0"
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise OptionError(
            f"{flag} {device!r}: MPS is not available on this machine; use "
            f"{arg('device=' + repr('cpu'), '--device cpu')}"
        )
    return dev


#: per model: {dtype: (the weights' version counters when copied, the cast copy)}
_DTYPE_COPIES: weakref.WeakKeyDictionary[nn.Module, dict[torch.dtype, tuple[tuple, nn.Module]]] = (
    weakref.WeakKeyDictionary()
)


def _dtype_copy(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``model`` cast to ``dtype``: a copy kept per model and dtype, reused while the weights'
    in-place version counters are unchanged."""
    import copy

    versions = tuple(p._version for p in model.parameters())
    kept = _DTYPE_COPIES.setdefault(model, {})
    if dtype not in kept or kept[dtype][0] != versions:
        kept[dtype] = (versions, copy.deepcopy(model).to(dtype))
    return kept[dtype][1]


@dataclass
class LoadedModel:
    """A model, its tokenizer and where its parts are.

    Attributes:
        name: the spec it was loaded from (bundled name, hub id, path).
        model: the full Hugging Face model (``*ForCausalLM`` for decoders, ``AutoModel`` else).
        tokenizer: its (fast) tokenizer.
        kind: ``"decoder"`` or ``"encoder"``.
        source: folder, file or hub id the weights came from.
        revision: hub revision, if any.
        blocks_path: module path of the block list (``model.layers``, ``encoder.layer``, ...).
        attn_path, mlp_path: paths of attention/MLP inside a block (None when absent); where
            ``hook_attn_out``/``hook_mlp_out`` are read is ``sublayer_paths`` (the sublayer's own
            output, before the residual add: inside them on post-LN BERT-style blocks).
        final_norm: whether ``hidden_states[n]`` is normalised after the last block.
        max_length: the context length used to truncate (tokens).
        sentence_pooling: native sentence-transformers pooling (``{"mode": "mean",
            "normalize": True}``) or None.
        load_seconds: wall time of the load.
    """

    name: str
    model: nn.Module
    tokenizer: Any
    kind: str
    source: str
    revision: str | None
    blocks_path: str
    attn_path: str | None
    mlp_path: str | None
    final_norm: bool
    max_length: int
    sentence_pooling: dict[str, Any] | None = None
    load_seconds: float = 0.0
    gguf_file: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def base_model(self) -> nn.Module:
        """The model without its task head (no unembedding): what extraction runs."""
        return getattr(self.model, "base_model", self.model)

    @property
    def blocks(self) -> nn.ModuleList:
        return self.model.get_submodule(self.blocks_path)  # type: ignore[return-value]

    @property
    def n_layers(self) -> int:
        """Number of blocks; there are ``n_layers + 1`` residual layers (hidden states)."""
        return len(self.blocks)

    @property
    def d_model(self) -> int:
        return int(self.config.hidden_size)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def with_dtype(self, dtype: torch.dtype) -> LoadedModel:
        """This model computing in ``dtype`` (e.g. a bfloat16 copy for a search whose winners
        are re-scored in float32); the tokenizer is shared. The copy of the weights is made once
        per model and dtype and kept while the model lives (rebuilt if its weights change in
        place), so repeated searches (a dashboard's clicks) do not copy again."""
        import dataclasses

        if dtype == self.dtype:
            return self
        return dataclasses.replace(self, model=_dtype_copy(self.model, dtype))

    def hook_points(self) -> list[str]:
        """Every hook point name of this model, in forward order."""
        return hook_names.all_hook_points(
            self.n_layers, self.final_norm, self.attn_path is not None, self.mlp_path is not None
        )

    def hook_module(self, name: str) -> tuple[nn.Module, str]:
        """The module a hook point reads and how: ``"input"`` (its first input) or ``"output"``."""
        block, component = hook_names.parse_hook(name)
        if component == "embed":
            return self.blocks[0], "input"
        if component == "final_norm":
            return self.base_model, "output"
        assert block is not None  # parse_hook returns a block for block components
        if not 0 <= block < self.n_layers:
            raise LayerOutOfRangeError(
                f"block {block} does not exist: {self.name} has blocks 0..{self.n_layers - 1}"
            )
        module = self.blocks[block]
        if component == "resid_pre":
            return module, "input"
        if component in ("attn_out", "mlp_out"):
            path = self.sublayer_paths[component]
            if path is None:
                what = "attention" if component == "attn_out" else "MLP"
                raise UnknownHookPointError(self._missing(what, block))
            return module.get_submodule(path), "output"
        return module, "output"

    @cached_property
    def sublayer_paths(self) -> dict[str, str | None]:
        """Paths inside a block of the modules whose outputs are ``hook_attn_out`` and
        ``hook_mlp_out``: the sublayer's own output, before the residual add (for post-LN
        blocks such as BERT's, a child of ``attn_path`` / ``mlp_path``; see
        ``sublayer_output``)."""
        out: dict[str, str | None] = {}
        for component, path in (("attn_out", self.attn_path), ("mlp_out", self.mlp_path)):
            if path is None:
                out[component] = None
                continue
            inner = sublayer_output(self.blocks[0].get_submodule(path))
            out[component] = f"{path}.{inner}" if inner else path
        return out

    def _missing(self, what: str, block: int) -> str:
        children = [n for n, _ in self.blocks[block].named_children()]
        return (
            f"{self.name}: no {what} submodule found in its blocks (children: {children}); pass "
            f"{'attn' if what == 'attention' else 'mlp'}_path='<child>' to load_model"
        )

    @cached_property
    def weights_fingerprint(self) -> str:
        """sha256 over every parameter's name, shape, dtype and a strided sample of its values.

        Cheap for any model size, and different for different weights in practice (a fine-tune
        changes the sampled values); recorded in every manifest to refuse mixing models.
        """
        h = hashlib.sha256()
        for name, p in sorted(self.model.state_dict().items()):
            flat = p.detach().reshape(-1)
            step = max(1, flat.numel() // 4096)
            sample = flat[::step].to("cpu", torch.float32).contiguous()
            h.update(f"{name}:{tuple(p.shape)}:{p.dtype}".encode())
            h.update(sample.numpy().tobytes())
        return h.hexdigest()

    def tokenizer_fingerprint(self) -> str:
        """sha256 of the tokenizer's vocabulary, merges and normalisation (not its call-time
        truncation/padding settings); cached, and recomputed if tokens are added."""
        key = len(self.tokenizer)
        cached = self.extra.get("tokenizer_fingerprint")
        if cached is not None and cached[0] == key:
            return cached[1]
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None:
            state = json.loads(backend.to_str())
            # Every call to the tokenizer rewrites these, so they would make the same tokenizer
            # look different after its first use.
            state.pop("truncation", None)
            state.pop("padding", None)
            payload = json.dumps(state, sort_keys=True)
        else:
            payload = repr(sorted(self.tokenizer.get_vocab().items()))
        digest = hashlib.sha256(payload.encode("utf-8")).hexdigest()
        self.extra["tokenizer_fingerprint"] = (key, digest)
        return digest

    def describe(self) -> dict[str, Any]:
        """The model part of a manifest."""
        return {
            "spec": self.name,
            "source": self.source,
            "gguf_file": self.gguf_file,
            "revision": self.revision,
            "class": type(self.model).__name__,
            "model_type": getattr(self.config, "model_type", None),
            "kind": self.kind,
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            "blocks_path": self.blocks_path,
            "attn_path": self.attn_path,
            "mlp_path": self.mlp_path,
            "sublayer_paths": self.sublayer_paths,
            "final_norm": self.final_norm,
            "max_length": self.max_length,
            "sentence_pooling": self.sentence_pooling,
            "weights_fingerprint": self.weights_fingerprint,
        }


def load_model(
    spec: str | os.PathLike[str],
    *,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
    revision: str | None = None,
    blocks_path: str | None = None,
    attn_path: str | None = None,
    mlp_path: str | None = None,
    trust_remote_code: bool = False,
    random_init: int | None = None,
) -> LoadedModel:
    """Load a model by bundled name, Hugging Face hub id, local folder or ``.gguf`` path.

    Args:
        spec: ``"smollm2-135m"``, ``"minilm-l6"``, ``"gpt2"``, ``"./my-model"``, ``"m.gguf"``.
        dtype: compute dtype (``"float32"``, ``"bfloat16"``, ``"float16"``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        revision: hub revision (branch, tag or commit).
        blocks_path: module path of the block list when it cannot be found automatically.
        attn_path: the attention child's name inside a block, to override discovery.
        mlp_path: the MLP child's name inside a block, to override discovery.
        trust_remote_code: passed to transformers; off unless you ask.
        random_init: a seed: keep the architecture and tokenizer but re-initialise every weight
            with the model's own initialiser (the "same architecture, random weights" control
            of probing). The name gets a ``@random<seed>`` suffix.

    Examples:
        >>> lm = load_model("smollm2-135m")  # doctest: +SKIP
        >>> lm.n_layers, lm.d_model  # doctest: +SKIP
        (30, 576)
    """
    start = time.perf_counter()
    torch_dtype = resolve_dtype(dtype)
    check_device(device)
    name = str(spec)
    gguf_file: str | None = None
    if name in BUNDLED:
        bundled = BUNDLED[name]
        folder = bundled.path()
        if bundled.gguf_file:
            gguf_file = bundled.gguf_file
            path = folder / gguf_file
            if not path.is_file():
                raise UnknownModelError(
                    f"{path} is missing from the package {bundled.pip_name}: reinstall it with "
                    f"`{bundled.install_hint()} --force-reinstall`"
                )
            source = str(_gguf_to_cache(path, trust_remote_code))
        else:
            source = str(folder)
    elif name.endswith(".gguf"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise UnknownModelError(f"GGUF file {name!r} does not exist: check the path")
        gguf_file = path.name
        source = str(_gguf_to_cache(path, trust_remote_code))
    elif Path(name).expanduser().is_dir():
        source = str(Path(name).expanduser().resolve())
        if not (Path(source) / "config.json").is_file():
            raise UnknownModelError(
                f"model folder {name!r} holds no model (no config.json): pass a folder written by "
                f"save_pretrained, a bundled name ({', '.join(sorted(BUNDLED))}) or a hub id"
            )
    elif _looks_like_path(name):
        raise UnknownModelError(
            f"model path {name!r} does not exist. Bundled models: {sorted(BUNDLED)}; or pass a "
            "Hugging Face hub id such as 'gpt2' or 'HuggingFaceTB/SmolLM2-135M'"
        )
    else:
        source = name
    lm = _from_pretrained(
        name,
        source,
        torch_dtype,
        revision,
        trust_remote_code,
        blocks_path=blocks_path,
        attn_path=attn_path,
        mlp_path=mlp_path,
    )
    lm.gguf_file = gguf_file
    if random_init is not None:
        _reinitialise(lm, random_init)
    lm.model.to(device)
    lm.load_seconds = time.perf_counter() - start
    return lm


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1)


def _from_pretrained(
    name: str,
    source: str,
    torch_dtype: torch.dtype,
    revision: str | None,
    trust_remote_code: bool,
    *,
    blocks_path: str | None,
    attn_path: str | None,
    mlp_path: str | None,
) -> LoadedModel:
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    common: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
    try:
        config = AutoConfig.from_pretrained(source, **common)
    except (OSError, ValueError) as exc:
        raise UnknownModelError(
            f"cannot load model {name!r}: it is not a bundled model ({', '.join(sorted(BUNDLED))}), "
            f"not a local folder or .gguf file, and the Hugging Face hub could not provide it "
            f"({type(exc).__name__}: {str(exc).splitlines()[0]}). Offline? Use a bundled model or a "
            "local folder; online, check the hub id"
        ) from None
    archs = getattr(config, "architectures", None) or []
    is_decoder = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs) or bool(
        getattr(config, "is_decoder", False)
    )
    loader = AutoModelForCausalLM if is_decoder else AutoModel
    # output_loading_info=True returns (model, info); transformers' hint names the model alone
    model, info = cast(
        tuple[Any, dict[str, Any]],
        loader.from_pretrained(source, dtype=torch_dtype, output_loading_info=True, **common),
    )
    if info.get("missing_keys"):
        raise UnknownModelError(
            f"{name!r} loaded from {source} is missing weights {sorted(info['missing_keys'])[:5]} "
            f"({len(info['missing_keys'])} in all), so they would be random: the checkpoint does "
            f"not match {type(model).__name__}. Check the model, or clear the cache "
            f"({cache_dir()}) if it came from a GGUF conversion"
        )
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(source, **common)
    if tokenizer.pad_token is None:
        # Padding values are masked out everywhere; any id will do, eos is the convention.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    sentence_pooling, st_max_len = _sentence_transformers_config(source)
    path, _ = find_blocks(model, getattr(config, "num_hidden_layers", None), blocks_path)
    first = model.get_submodule(path)[0]
    base = getattr(model, "base_model", model)
    base_prefix = getattr(model, "base_model_prefix", "")
    rel_blocks = path.removeprefix(base_prefix + ".") if base is not model else path
    return LoadedModel(
        name=name,
        model=model,
        tokenizer=tokenizer,
        kind="decoder" if is_decoder else "encoder",
        source=source,
        revision=revision,
        blocks_path=path,
        attn_path=find_child(first, ATTENTION_NAMES, attn_path),
        mlp_path=find_child(first, MLP_NAMES, mlp_path),
        final_norm=has_final_norm(base, rel_blocks),
        max_length=st_max_len or _context_length(config, tokenizer),
        sentence_pooling=sentence_pooling,
    )


def _context_length(config: Any, tokenizer: Any) -> int:
    candidates = [
        getattr(config, key, None)
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
    ]
    tok_max = getattr(tokenizer, "model_max_length", None)
    if tok_max and tok_max < 1_000_000:
        candidates.append(tok_max)
    known = [int(c) for c in candidates if isinstance(c, int) and c > 0]
    return min(known) if known else 2048


def _sentence_transformers_config(folder: str) -> tuple[dict[str, Any] | None, int | None]:
    """Native pooling and max length of a sentence-transformers folder (None, None otherwise)."""
    root = Path(folder)
    modules_file = root / "modules.json"
    if not modules_file.is_file():
        return None, None
    modules = json.loads(modules_file.read_text())
    pooling: dict[str, Any] | None = None
    normalize = False
    for module in modules:
        kind = module.get("type", "")
        if kind.endswith("Pooling"):
            cfg = json.loads((root / module["path"] / "config.json").read_text())
            mode = next(
                (
                    m
                    for key, m in (
                        ("pooling_mode_cls_token", "first"),
                        ("pooling_mode_mean_tokens", "mean"),
                        ("pooling_mode_max_tokens", "max"),
                        ("pooling_mode_lasttoken", "last"),
                        ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
                    )
                    if cfg.get(key)
                ),
                "mean",
            )
            pooling = {"mode": mode}
        elif kind.endswith("Normalize"):
            normalize = True
    if pooling is not None:
        pooling["normalize"] = normalize
    max_len = None
    st_cfg = root / "sentence_bert_config.json"
    if st_cfg.is_file():
        max_len = json.loads(st_cfg.read_text()).get("max_seq_length")
    return pooling, max_len


def _gguf_to_cache(path: Path, trust_remote_code: bool) -> Path:
    """Dequantise a GGUF file once and cache it as config + safetensors; return the folder.

    The cache key is the file's sha256, so a changed file is converted again. The folder is
    written under a temporary name and renamed, so an interrupted conversion leaves nothing, and
    a file lock makes concurrent processes (test workers, Ray actors) convert it once: the others
    wait, then read the finished folder.
    """
    from filelock import FileLock

    digest = file_sha256(path)
    target = cache_dir() / "gguf" / f"{path.stem}-{digest[:16]}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not ((target / "model.safetensors").is_file() and (target / "config.json").is_file()):
            _convert_gguf(path, target, digest, trust_remote_code)
    return target


def _convert_gguf(path: Path, target: Path, digest: str, trust_remote_code: bool) -> None:
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("dequantising %s (once; cached in %s)", path.name, target)
    kwargs: dict[str, Any] = {"gguf_file": path.name, "trust_remote_code": trust_remote_code}
    model = AutoModelForCausalLM.from_pretrained(path.parent, dtype=torch.float32, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, **kwargs)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        config = model.config.to_dict()
        config.pop("quantization_config", None)  # the cached weights are plain float32
        config["architectures"] = [type(model).__name__]
        config["workbench_gguf_source"] = {"file": path.name, "sha256": digest}
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        save_model(model, str(tmp / "model.safetensors"))
        tokenizer.save_pretrained(str(tmp))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _reinitialise(lm: LoadedModel, seed: int) -> None:
    """Replace every weight by a fresh draw from the model's initialiser (seeded)."""
    with seeded(seed):
        fresh = type(lm.model)(lm.model.config)  # runs the model's own init
    fresh.to(dtype=lm.dtype)
    fresh.eval()
    lm.model = fresh
    lm.name = f"{lm.name}@random{seed}"
    lm.__dict__.pop("weights_fingerprint", None)
