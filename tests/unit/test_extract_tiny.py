"""``extract`` and the activation store on tiny random Llama, GPT-2 and BERT models.

Every stored vector is checked against an independent computation: Hugging Face's own
``output_hidden_states`` (or forward hooks placed by hand), one text at a time without padding.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch

import workbench
from workbench.activations import extract as extract_mod
from workbench.activations.pooling import TEMPLATES
from workbench.activations.store import ActivationStore, TokenInfo
from workbench.errors import (
    ContextLengthError,
    EmptyDatasetError,
    LayerOutOfRangeError,
    PoolingError,
    StoreCorruptError,
    StoreMismatchError,
    StoreSelectionError,
    UnknownHookPointError,
)

TEXTS = [
    "The city of Paris is in France.",
    "Hi",
    "A much longer sentence that rambles on about rivers, mountains and the old harbour.",
    "Tokyo",
    "Numbers 1 2 3, and punctuation!?",
    "one two three four five six seven eight nine ten eleven twelve thirteen",
    "Café crème à Lyon.",
]
POOLINGS = "mean,last,first,max,tokens"
POOLED = ["mean", "last", "first", "max"]
ATOL = 1e-5


def run_extract(lm, texts, out, **kwargs):
    """``workbench.extract`` without a progress bar."""
    kwargs.setdefault("progress", False)
    return workbench.extract(lm, texts, out=out, **kwargs)


def hand_pool(states: torch.Tensor, name: str) -> torch.Tensor:
    """Pool ``[..., T, d]`` over its token axis the obvious way."""
    return {
        "mean": lambda s: s.mean(-2),
        "max": lambda s: s.amax(-2),
        "first": lambda s: s[..., 0, :],
        "last": lambda s: s[..., -1, :],
    }[name](states)


def token_ids(lm, text: str) -> list[int]:
    return lm.tokenizer(text, add_special_tokens=True)["input_ids"]


def hf_hidden_states(lm, ids: list[int]) -> torch.Tensor:
    """Hugging Face hidden states of one unpadded sequence, ``[n_layers + 1, T, d]``."""
    with torch.inference_mode():
        out = lm.base_model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    return torch.stack([h[0] for h in out.hidden_states]).float()


def assert_close(actual, expected, atol=ATOL):
    actual = torch.as_tensor(np.asarray(actual, dtype=np.float32))
    expected = torch.as_tensor(expected, dtype=torch.float32)
    torch.testing.assert_close(actual, expected, rtol=0, atol=atol, equal_nan=True)


def shard_file_digests(run: Path) -> dict[str, str]:
    """sha256 of every shard data file (markers hold timings, so they are left out)."""
    return {
        f.name: hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted((run / "shards").iterdir())
        if f.suffix == ".npy" or f.name.endswith(".token_strings.json")
    }


def all_file_state(run: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file of a run folder (but its writer lock, which every run
    takes and releases)."""
    return {
        str(f.relative_to(run)): (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns)
        for f in sorted(run.rglob("*"))
        if f.is_file() and f.name != ".lock"
    }


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["llama", "gpt2", "bert"])
def arch(request):
    return request.param


@pytest.fixture(scope="module")
def tiny(arch, request):
    return request.getfixturevalue(f"tiny_{arch}")


@pytest.fixture(scope="module")
def reference(tiny):
    """Per text: token ids and HF hidden states ``[n_layers + 1, T, d]``."""
    out = []
    for text in TEXTS:
        ids = token_ids(tiny, text)
        out.append((ids, hf_hidden_states(tiny, ids)))
    return out


@pytest.fixture(scope="module")
def store(tiny, tmp_path_factory):
    """Every layer, every pooling, right padding, one shard."""
    return run_extract(tiny, TEXTS, tmp_path_factory.mktemp("run"), layers="all", pooling=POOLINGS)


# -- (a) stored layers are Hugging Face's hidden states ---------------------------------------


def test_manifest_describes_the_run(tiny, store):
    m = store.manifest
    assert store.complete and m["status"] == "complete"
    assert len(store) == len(TEXTS) and store.texts == TEXTS
    assert store.d_model == 32
    assert store.pooling_names == ["mean", "last", "first", "max", "tokens"]
    assert sorted(store.layers) == [0, 1, 2, 3]
    assert store.hook_points == [
        "hook_embed",
        "blocks.0.hook_resid_post",
        "blocks.1.hook_resid_post",
        "ln_final.hook_normalized" if tiny.final_norm else "blocks.2.hook_resid_post",
    ]
    assert m["model"]["weights_fingerprint"] == tiny.weights_fingerprint
    assert m["extraction"]["n_shards"] == 1
    assert m["stats"]["n_truncated"] == 0
    assert m["stats"]["n_tokens"] == sum(len(token_ids(tiny, t)) for t in TEXTS)
    assert m["workbench_version"] == workbench.__version__


@pytest.mark.parametrize("pooling", POOLED)
def test_pooled_layers_equal_hf_hidden_states(store, reference, pooling):
    got = store.get(pooling)
    assert got.shape == (len(TEXTS), 4, 32) and got.dtype == np.float32
    want = torch.stack([hand_pool(states, pooling) for _, states in reference])
    assert_close(got, want)


def test_token_states_equal_hf_hidden_states(store, reference):
    for row, (ids, states) in enumerate(reference):
        got = store.token_states(row)  # [T, layers, d]
        assert got.shape == (len(ids), 4, 32)
        assert_close(got, states.transpose(0, 1))
        assert store.tokens(row).ids.tolist() == ids


def test_encoder_last_layer_is_the_last_block_output(tiny, store, reference):
    # BERT has no final norm: layer n is the raw output of the last block; decoders store the
    # normalised state, which is hidden_states[n] as well.
    last = store.hook_points[-1]
    assert last == ("ln_final.hook_normalized" if tiny.final_norm else "blocks.2.hook_resid_post")
    assert_close(store.layer(-1, "mean"), torch.stack([s[-1].mean(0) for _, s in reference]))


# -- (b) attention / MLP / block outputs equal hand-placed forward hooks ------------------------


# The last projection of each sublayer, named by hand per architecture (not the code's
# attn_path / mlp_path): its output is the sublayer's own output before the residual add
# (TransformerLens semantics); the dropout after it is the identity in eval mode.
SUBLAYER_PROJECTIONS = {
    "LlamaForCausalLM": ("self_attn.o_proj", "mlp.down_proj"),
    "GPT2LMHeadModel": ("attn.c_proj", "mlp.c_proj"),
    "BertModel": ("attention.output.dense", "output.dense"),
}


def manual_hook_states(lm, ids: list[int]) -> dict[str, torch.Tensor]:
    """Outputs of every block's attention and MLP (before the residual add) and of every block,
    ``[T, d]``, by plain forward hooks on the modules named in ``SUBLAYER_PROJECTIONS``."""
    assert not lm.model.training  # dropout must be the identity for the reference to hold
    attn, mlp = SUBLAYER_PROJECTIONS[type(lm.model).__name__]
    seen: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(module, args, output):
            tensor = output[0] if isinstance(output, tuple) else output
            seen[name] = tensor[0].detach().float().clone()

        return hook

    handles = []
    for b, block in enumerate(lm.blocks):
        handles.append(
            block.get_submodule(attn).register_forward_hook(keep(f"blocks.{b}.hook_attn_out"))
        )
        handles.append(
            block.get_submodule(mlp).register_forward_hook(keep(f"blocks.{b}.hook_mlp_out"))
        )
        handles.append(block.register_forward_hook(keep(f"blocks.{b}.hook_resid_post")))
    try:
        with torch.inference_mode():
            lm.base_model(input_ids=torch.tensor([ids]))
    finally:
        for h in handles:
            h.remove()
    return seen


def test_component_hook_points_equal_manual_hooks(tiny, tmp_path):
    patterns = ["blocks.*.hook_attn_out", "blocks.*.hook_mlp_out", "blocks.*.hook_resid_post"]
    store = run_extract(
        tiny, TEXTS, tmp_path / "run", hook_points=patterns, pooling="mean,last,tokens"
    )
    names = store.hook_points
    assert len(names) == 9 and names[0] == "blocks.0.hook_attn_out"  # forward order
    # Residual layers 1, 2 (and 3 without a final norm) are recorded as layers.
    assert sorted(store.layers) == ([1, 2] if tiny.final_norm else [1, 2, 3])
    for row, text in enumerate(TEXTS):
        manual = manual_hook_states(tiny, token_ids(tiny, text))
        want = torch.stack([manual[n] for n in names])  # [hooks, T, d]
        assert_close(store.token_states(row), want.transpose(0, 1))
        assert_close(store.get("mean", rows=[row])[0], want.mean(1))
        assert_close(store.get("last", rows=[row])[0], want[:, -1])


def test_last_block_output_is_not_the_normalised_state(tiny, store, tmp_path):
    raw = run_extract(
        tiny, TEXTS, tmp_path / "raw", hook_points="blocks.-1.hook_resid_post", pooling="last"
    )
    assert raw.hook_points == ["blocks.2.hook_resid_post"]
    same = np.allclose(raw.get("last")[:, 0], store.layer(-1, "last"), atol=ATOL)
    assert same is (not tiny.final_norm)


def count_hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_forward_stops_after_the_deepest_hook_and_hooks_are_removed(tiny, tmp_path):
    before = count_hooks(tiny.model)
    calls = []
    handle = tiny.blocks[1].register_forward_hook(lambda *a: calls.append(1))
    try:
        store = run_extract(tiny, TEXTS, tmp_path / "run", layers=[0, 1], pooling="last")
    finally:
        handle.remove()
    assert calls == []  # block 1 never ran: layer 1 is block 0's output
    assert count_hooks(tiny.model) == before
    assert sorted(store.layers) == [0, 1]


def test_hooks_are_removed_when_extraction_fails(tiny, tmp_path, monkeypatch):
    before = count_hooks(tiny.model)

    def broken_pool(*args, **kwargs):
        raise RuntimeError("pooling exploded")

    monkeypatch.setattr(extract_mod, "pool", broken_pool)
    with pytest.raises(RuntimeError, match="pooling exploded"):
        run_extract(tiny, TEXTS, tmp_path / "run", layers=[1], pooling="mean")
    assert count_hooks(tiny.model) == before
    assert tiny.model.training is False


# -- (c) padding side and batch composition do not change a vector ----------------------------


@pytest.mark.parametrize(
    "batching",
    [
        {"padding_side": "left"},
        {"padding_side": "left", "batch_tokens": 24, "max_batch_size": 2},
        {"padding_side": "right", "max_batch_size": 1},
        {"padding_side": "right", "batch_tokens": 40, "max_batch_size": 3},
    ],
)
def test_padding_and_batching_invariance(tiny, store, tmp_path, batching):
    other = run_extract(tiny, TEXTS, tmp_path / "run", layers="all", pooling=POOLINGS, **batching)
    for pooling in POOLED:
        assert_close(other.get(pooling), store.get(pooling), atol=1e-4)
    for row in range(len(TEXTS)):
        assert_close(other.token_states(row), store.token_states(row), atol=1e-4)


# -- (d) reading the store ---------------------------------------------------------------------


def test_get_selects_layers_hook_points_and_rows(store):
    full = store.get("mean")
    np.testing.assert_array_equal(store.get("mean", layers=[-1, 0]), full[:, [3, 0]])
    np.testing.assert_array_equal(store.get("mean", layers="1:3"), full[:, 1:3])
    np.testing.assert_array_equal(store.get("mean", layers="all"), full)
    np.testing.assert_array_equal(store.get("mean", layers=2), full[:, [2]])
    np.testing.assert_array_equal(store.get("mean", rows=slice(1, 6, 2)), full[1:6:2])
    np.testing.assert_array_equal(store.get("mean", rows=[5, 0, 3]), full[[5, 0, 3]])
    np.testing.assert_array_equal(store.get("mean", rows=-1), full[[-1]])
    np.testing.assert_array_equal(store.get("mean", rows=np.array([2, 2])), full[[2, 2]])
    np.testing.assert_array_equal(
        store.get("mean", layers=[2, 0], rows=[6, 1]), full[[6, 1]][:, [2, 0]]
    )
    np.testing.assert_array_equal(
        store.get("mean", hook_points=["blocks.1.hook_resid_post", "hook_embed"]), full[:, [2, 0]]
    )
    np.testing.assert_array_equal(store.get("mean", hook_points="hook_embed"), full[:, [0]])


def test_as_torch_layer_and_iter_layers(store):
    full = store.get("last")
    tensor = store.get("last", as_torch=True)
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
    np.testing.assert_array_equal(tensor.numpy(), full)
    np.testing.assert_array_equal(store.layer(-1, "last"), full[:, 3])
    np.testing.assert_array_equal(store.layer(1, "last", rows=[4, 2]), full[[4, 2], 1])
    names = []
    for j, (name, values) in enumerate(store.iter_layers("last")):
        names.append(name)
        assert values.shape == (len(TEXTS), 32)
        np.testing.assert_array_equal(values, full[:, j])
    assert names == store.hook_points


def _fold(text: str) -> str:
    """Lower case without accents: what the uncased WordPiece tokenizer emits."""
    return "".join(
        c for c in unicodedata.normalize("NFD", text.lower()) if not unicodedata.combining(c)
    )


def test_token_offsets_index_the_text(store):
    for row, text in enumerate(TEXTS):
        info = store.tokens(row)
        assert isinstance(info, TokenInfo)
        assert info.model_input == text and info.text_start == 0
        assert len(info.strings) == len(info.ids) == len(info.offsets)
        assert info.strings[0] == "[CLS]" and info.strings[-1] == "[SEP]"
        assert info.offsets[0].tolist() == [0, 0] and info.offsets[-1].tolist() == [0, 0]
        for (a, b), piece in zip(info.offsets[1:-1], info.strings[1:-1], strict=True):
            assert _fold(text[a:b]) == piece.removeprefix("##"), (row, piece, text[a:b])
    assert store.tokens(-1).model_input == TEXTS[-1]


def test_token_states_layer_selection(store):
    full = store.token_states(2)
    np.testing.assert_array_equal(store.token_states(2, layers=[-1, 1]), full[:, [3, 1]])
    np.testing.assert_array_equal(store.token_states(2, hook_points="hook_embed"), full[:, [0]])
    np.testing.assert_array_equal(store.token_states(-7), store.token_states(0))


def test_store_selection_errors(store):
    with pytest.raises(StoreSelectionError, match="token_states"):
        store.get("tokens")
    with pytest.raises(
        StoreSelectionError, match=r"'median'.*\['mean', 'last', 'first', 'max', 'tokens'\]"
    ):
        store.get("median")
    with pytest.raises(StoreSelectionError, match=r"rows \[7\].*rows 0..6"):
        store.get("mean", rows=[0, 7])
    with pytest.raises(LayerOutOfRangeError, match="0..3"):
        store.get("mean", layers=[4])
    with pytest.raises(StoreSelectionError, match="hook points.*not in"):
        store.get("mean", hook_points=["blocks.0.hook_mlp_out"])
    with pytest.raises(StoreSelectionError, match="not both"):
        store.get("mean", layers=[0], hook_points=["hook_embed"])
    with pytest.raises(StoreSelectionError):
        store.tokens(len(TEXTS))


def test_missing_layers_and_tokens_name_what_is_stored(tiny_llama, tmp_path):
    store = run_extract(tiny_llama, TEXTS[:3], tmp_path / "run", layers=[0, 2], pooling="mean")
    with pytest.raises(StoreSelectionError, match=r"layers \[1\] were not extracted.*\[0, 2\]"):
        store.get("mean", layers=[1])
    with pytest.raises(StoreSelectionError, match="'tokens' is not in"):
        store.token_states(0)


def test_reopening_the_folder_reads_the_same(store):
    again = workbench.open_store(store.path)
    np.testing.assert_array_equal(again.get("max"), store.get("max"))
    assert again.tokens(3).strings == store.tokens(3).strings
    assert "rows=7" in repr(again)
    again.verify()
    with pytest.raises(FileNotFoundError, match="not a workbench run"):
        ActivationStore(store.path / "shards")


def test_many_shards_read_back_like_one(tiny, store, tmp_path):
    sharded = run_extract(
        tiny, TEXTS, tmp_path / "run", layers="all", pooling=POOLINGS, shard_size=2
    )
    assert len(sharded.shards) == 4 and sharded.manifest["extraction"]["n_shards"] == 4
    assert [(s["start"], s["stop"]) for s in sharded.shards] == [(0, 2), (2, 4), (4, 6), (6, 7)]
    for pooling in POOLED:
        assert_close(sharded.get(pooling), store.get(pooling))
        rows = [6, 1, 4, 3]  # across shards, unsorted
        assert_close(
            sharded.get(pooling, rows=rows, layers=[-1, 1]),
            store.get(pooling, rows=rows, layers=[-1, 1]),
        )
    for row in range(len(TEXTS)):
        a, b = sharded.tokens(row), store.tokens(row)
        assert a.strings == b.strings
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.offsets, b.offsets)
        assert_close(sharded.token_states(row), store.token_states(row))


# -- (e) float16 storage -----------------------------------------------------------------------


def test_float16_storage(tiny, store, tmp_path):
    half = run_extract(
        tiny, TEXTS, tmp_path / "run", layers="all", pooling=POOLINGS, storage_dtype="float16"
    )
    assert half.manifest["extraction"]["storage_dtype"] == "float16"
    assert half.manifest["stats"]["n_fp16_overflow"] == 0
    for pooling in POOLED:
        got = half.get(pooling)
        assert got.dtype == np.float16
        np.testing.assert_array_equal(got, store.get(pooling).astype(np.float16))
    assert half.token_states(0).dtype == np.float16
    np.testing.assert_allclose(half.token_states(0), store.token_states(0), rtol=1e-3, atol=1e-3)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_float16_overflow_is_counted_and_warned(tiny_llama, tmp_path):
    huge = workbench.load_model(tiny_llama.source)
    with torch.no_grad():
        huge.model.model.embed_tokens.weight.mul_(1e8)  # std 0.02 -> 2e6
    with pytest.warns(UserWarning, match="exceeded float16's range"):
        store = run_extract(
            huge, TEXTS[:2], tmp_path / "run", layers=[0], pooling="max", storage_dtype="float16"
        )
    assert store.manifest["stats"]["n_fp16_overflow"] > 0
    assert np.isinf(store.get("max")).any()


# -- (f) templates -----------------------------------------------------------------------------


def test_prompteol_template(tiny_llama, tmp_path):
    store = run_extract(
        tiny_llama,
        TEXTS,
        tmp_path / "run",
        layers="all",
        pooling="last,mean,tokens",
        template="prompteol",
    )
    template = TEMPLATES["prompteol"]
    prefix = template.split("{text}")[0]
    prefix_tokens = tiny_llama.tokenizer.tokenize(prefix)
    assert store.manifest["extraction"]["template"] == template
    assert store.manifest["extraction"]["pool_over"] == "input"
    for row, text in enumerate(TEXTS):
        info = store.tokens(row)
        model_input = template.replace("{text}", text)
        assert info.model_input == model_input
        assert info.text_start == len(prefix) == len('This sentence : "')
        assert info.model_input[info.text_start : info.text_start + len(text)] == text
        assert info.strings[1 : 1 + len(prefix_tokens)] == prefix_tokens  # after [CLS]
        # The text's own tokens, found by their offsets relative to the text.
        rel = info.text_offsets()
        inside = [
            i
            for i, (a, b) in enumerate(info.offsets)
            if b > a and a >= info.text_start and b <= info.text_start + len(text)
        ]
        for i in inside:
            a, b = rel[i]
            assert _fold(text[a:b]) == info.strings[i].removeprefix("##")
        states = hf_hidden_states(tiny_llama, token_ids(tiny_llama, model_input))
        assert_close(store.get("last", rows=[row])[0], states[:, -1])
        assert_close(store.get("mean", rows=[row])[0], states.mean(1))
        assert_close(store.token_states(row), states.transpose(0, 1))


def test_echo_template_pools_over_the_second_copy(tiny_gpt2, tmp_path):
    texts = TEXTS[:4]
    store = run_extract(
        tiny_gpt2,
        texts,
        tmp_path / "echo",
        layers=[0, -1],
        pooling="mean,first,last,max",
        template="echo",
    )
    assert store.manifest["extraction"]["pool_over"] == "text"
    whole = run_extract(
        tiny_gpt2,
        texts,
        tmp_path / "input",
        layers=[0, -1],
        pooling="mean",
        template="echo",
        pool_over="input",
    )
    for row, text in enumerate(texts):
        model_input = TEMPLATES["echo"].replace("{text}", text)
        start = model_input.rindex(text)
        enc = tiny_gpt2.tokenizer(model_input, return_offsets_mapping=True)
        span = [
            i
            for i, (a, b) in enumerate(enc["offset_mapping"])
            if b > a and a >= start and b <= start + len(text)
        ]
        assert span == list(range(span[0], span[-1] + 1)) and len(span) >= 1
        states = hf_hidden_states(tiny_gpt2, enc["input_ids"])[[0, -1]]  # [2, T, d]
        text_states = states[:, span]
        for pooling in ("mean", "first", "last", "max"):
            assert_close(store.get(pooling, rows=[row])[0], hand_pool(text_states, pooling))
        assert_close(whole.get("mean", rows=[row])[0], states.mean(1))
        assert store.tokens(row).text_start == start


def test_bad_template_and_pool_over(tiny_llama, tmp_path):
    with pytest.raises(PoolingError, match="prompteol"):
        run_extract(tiny_llama, TEXTS, tmp_path / "a", template="Summarise this")
    with pytest.raises(ValueError, match="pool_over='words'.*input.*text"):
        run_extract(tiny_llama, TEXTS, tmp_path / "b", pool_over="words")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# -- (g) an identical run is reused, not recomputed --------------------------------------------


def test_identical_run_is_reused(tiny_llama, tmp_path, monkeypatch):
    out = tmp_path / "run"
    first = run_extract(tiny_llama, TEXTS, out, layers="all", pooling="mean,last")
    state = all_file_state(out)

    def must_not_run(*args, **kwargs):
        raise AssertionError("a complete run was recomputed")

    monkeypatch.setattr(extract_mod, "_run_shard", must_not_run)
    second = run_extract(
        tiny_llama,
        list(TEXTS),
        out,
        layers="all",
        pooling="mean,last",
        padding_side="left",
        batch_tokens=64,
    )  # not part of the identity
    assert all_file_state(out) == state
    np.testing.assert_array_equal(second.get("mean"), first.get("mean"))


def test_reuse_in_a_fresh_session_after_the_tokenizer_was_used(tiny_llama, tmp_path, monkeypatch):
    # A freshly loaded tokenizer carries the truncation/padding of its tokenizer.json, which its
    # first call resets: that must not make the second, identical extract a "different run".
    fresh = workbench.load_model(tiny_llama.source)
    before = fresh.tokenizer_fingerprint()
    first = run_extract(fresh, TEXTS, tmp_path / "run", layers=[0, -1], pooling="mean")
    fresh.extra.pop("tokenizer_fingerprint")  # recompute from the used tokenizer, not the cache
    assert fresh.tokenizer_fingerprint() == before

    def must_not_run(*args, **kwargs):
        raise AssertionError("a complete run was recomputed")

    monkeypatch.setattr(extract_mod, "_run_shard", must_not_run)
    again = run_extract(fresh, TEXTS, tmp_path / "run", layers=[0, -1], pooling="mean")
    np.testing.assert_array_equal(again.get("mean"), first.get("mean"))


# -- (h) a different run in the same folder is refused -----------------------------------------


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"layers": [0, 1]}, "hook_points"),
        ({"pooling": "mean"}, "poolings"),
        ({"texts": TEXTS[:3]}, "dataset_fingerprint"),
        ({"storage_dtype": "float16"}, "storage_dtype"),
        ({"template": "prompteol"}, "template"),
        ({"max_length": 20}, "max_length"),
        ({"shard_size": 2}, "shard_size"),
        ({"model": "gpt2"}, "weights_fingerprint"),
    ],
)
def test_different_run_in_the_same_folder_is_refused(
    tiny_llama, tiny_gpt2, tmp_path, change, named
):
    out = tmp_path / "run"
    run_extract(tiny_llama, TEXTS, out, layers="all", pooling="mean,last")
    state = all_file_state(out)
    kwargs = {"layers": "all", "pooling": "mean,last"}
    kwargs.update({k: v for k, v in change.items() if k not in ("texts", "model")})
    model = tiny_gpt2 if change.get("model") else tiny_llama
    with pytest.raises(StoreMismatchError) as info:
        run_extract(model, change.get("texts", TEXTS), out, **kwargs)
    message = str(info.value)
    assert f"{named}: stored" in message
    assert "overwrite=True" in message and "Nothing was changed" in message
    assert isinstance(info.value, FileExistsError)
    assert all_file_state(out) == state


def test_non_empty_folder_without_a_run_is_refused(tiny_llama, tmp_path):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    (out / "sub").mkdir()
    for overwrite in (False, True):
        with pytest.raises(StoreMismatchError, match=r"holds notes.txt, sub/ and no workbench run"):
            run_extract(tiny_llama, TEXTS, out, layers=[0], overwrite=overwrite)
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "sub"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_extract(tiny_llama, TEXTS, empty, layers=[0]).complete


def test_overwrite_replaces_the_run(tiny_llama, tmp_path):
    out = tmp_path / "run"
    run_extract(tiny_llama, TEXTS, out, layers="all", pooling="mean,last,tokens", shard_size=3)
    store = run_extract(tiny_llama, TEXTS[:2], out, layers=[0, 1], pooling="max", overwrite=True)
    assert store.complete and len(store) == 2
    assert sorted(store.layers) == [0, 1] and store.pooling_names == ["max"]
    names = sorted(p.name for p in (out / "shards").iterdir())
    assert all(n.startswith("00000.") for n in names)
    assert not any("tokens" in n or "mean" in n for n in names)
    reference = hf_hidden_states(tiny_llama, token_ids(tiny_llama, TEXTS[1]))
    assert_close(store.get("max", rows=[1])[0], reference[[0, 1]].amax(1))


# -- (i) bad input -----------------------------------------------------------------------------


def test_empty_inputs(tiny_llama, tmp_path):
    with pytest.raises(EmptyDatasetError, match="no texts"):
        run_extract(tiny_llama, [], tmp_path / "a")
    with pytest.raises(EmptyDatasetError, match=r"2 of 4 texts are empty.*rows \[1, 2\]"):
        run_extract(tiny_llama, ["fine", "", "  \n", "ok"], tmp_path / "b")
    with pytest.raises(TypeError, match=r"texts\[1\] is a int"):
        run_extract(tiny_llama, ["fine", 3], tmp_path / "c")
    assert not any((tmp_path / n).exists() for n in "abc")


def test_truncation_warns_and_is_counted(tiny_llama, tmp_path):
    lengths = [len(token_ids(tiny_llama, t)) for t in TEXTS]
    long_rows = [i for i, n in enumerate(lengths) if n > 4]
    assert 0 < len(long_rows) < len(TEXTS)
    with pytest.warns(UserWarning, match=f"{len(long_rows)} texts were longer than 4 tokens"):
        store = run_extract(
            tiny_llama, TEXTS, tmp_path / "run", layers="all", pooling="last,tokens", max_length=4
        )
    stats = store.manifest["stats"]
    assert stats["n_truncated"] == len(long_rows)
    assert stats["truncated_rows"] == long_rows
    for row, text in enumerate(TEXTS):
        ids = token_ids(tiny_llama, text)[:4]
        assert store.tokens(row).ids.tolist() == ids
        states = hf_hidden_states(tiny_llama, ids)
        assert_close(store.get("last", rows=[row])[0], states[:, -1])
        assert store.token_states(row).shape[0] == len(ids)


def test_truncation_error_refuses_before_writing_shards(tiny_llama, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ContextLengthError) as info:
        run_extract(tiny_llama, TEXTS, out, max_length=4, truncation="error")
    message = str(info.value)
    assert "max_length=4" in message and "(0, " in message and "truncation='warn'" in message
    assert not [p for p in out.rglob("*") if p.parent.name == "shards"]  # no shard file at all


def test_text_longer_than_the_context_is_truncated_by_default(tiny_llama, tmp_path):
    text = " ".join(["word"] * 200)  # 202 tokens; the tiny context is 128
    with pytest.warns(UserWarning, match="longer than 128 tokens"):
        store = run_extract(
            tiny_llama, [text, "short"], tmp_path / "run", layers=[-1], pooling="tokens"
        )
    assert store.token_states(0).shape == (128, 1, 32)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"layers": 99}, LayerOutOfRangeError, r"layer 99 does not exist.*layers 0..3"),
        ({"layers": [0, -5]}, LayerOutOfRangeError, r"layers 0..3.*-4"),
        ({"pooling": "median"}, PoolingError, r"unknown pooling 'median'.*'pos:K'"),
        ({"pooling": "mean,native"}, PoolingError, "no sentence-transformers config"),
        ({"hook_points": ["blocks.7.hook_mlp_out"]}, UnknownHookPointError, "blocks 0..2"),
        ({"truncation": "cut"}, ValueError, "truncation='cut'"),
        ({"padding_side": "middle"}, ValueError, "padding_side='middle'"),
        ({"storage_dtype": "int8"}, ValueError, "storage_dtype='int8'"),
        ({"shard_size": 0}, ValueError, "shard_size=0: must be a positive integer"),
        ({"layers": [1.5]}, ValueError, r"layer 1.5 .* is not an integer"),
        ({"layers": "abc"}, ValueError, r"layer .abc. .* is not an integer"),
        ({"layers": [0], "hook_points": ["hook_embed"]}, ValueError, "not both"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(
    tiny_llama, tmp_path, kwargs, error, match
):
    out = tmp_path / "run"
    with pytest.raises(error, match=match):
        run_extract(tiny_llama, TEXTS, out, **kwargs)
    assert not out.exists()


def test_position_beyond_a_text_is_nan_and_counted(tiny_bert, tmp_path):
    texts = ["Hi", "The city of Paris is in France."]  # 3 and 10 tokens
    with pytest.warns(UserWarning, match="NaN"):
        store = run_extract(
            tiny_bert, texts, tmp_path / "run", layers=[0, 3], pooling="pos:4,pos:-4"
        )
    assert store.manifest["stats"]["n_nan_positions"] == 2
    for name in ("pos:4", "pos:-4"):
        values = store.get(name)
        assert np.isnan(values[0]).all() and not np.isnan(values[1]).any()
    states = hf_hidden_states(tiny_bert, token_ids(tiny_bert, texts[1]))[[0, 3]]
    assert_close(store.get("pos:4")[1], states[:, 4])
    assert_close(store.get("pos:-4")[1], states[:, -4])


# -- (j) interrupted runs resume shard by shard, byte for byte ---------------------------------


@pytest.fixture
def counted_shards(monkeypatch):
    """The texts of every shard ``_run_shard`` computes, in call order."""
    calls: list[list[str]] = []
    real = extract_mod._run_shard

    def counting(lm, texts, *args, **kwargs):
        calls.append(list(texts))
        return real(lm, texts, *args, **kwargs)

    monkeypatch.setattr(extract_mod, "_run_shard", counting)
    return calls


RESUME = {"layers": "all", "pooling": "mean,last,tokens", "shard_size": 2}


@pytest.fixture
def uninterrupted(tiny_llama, tmp_path):
    return run_extract(tiny_llama, TEXTS, tmp_path / "reference", **RESUME)


def test_resume_recomputes_only_the_broken_shards(
    tiny_llama, tmp_path, uninterrupted, counted_shards
):
    out = tmp_path / "run"
    run_extract(tiny_llama, TEXTS, out, **RESUME)
    assert shard_file_digests(out) == shard_file_digests(uninterrupted.path)
    counted_shards.clear()
    shards = out / "shards"
    kept = all_file_state(out)
    # Make it look like a run killed part way: status running, one file cut short, one marker
    # never written, one file with a flipped byte (same size: only its checksum tells), and a
    # temporary file left behind by an atomic write.
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["status"] = "running"
    (out / "manifest.json").write_text(json.dumps(manifest))
    cut = shards / "00001.mean.npy"
    cut.write_bytes(cut.read_bytes()[:-10])
    (shards / "00002.json").unlink()
    flipped = shards / "00003.tokens.npy"
    data = bytearray(flipped.read_bytes())
    data[-1] ^= 0xFF
    flipped.write_bytes(bytes(data))
    (shards / ".00001.last.npy.x1y2.tmp").write_bytes(b"partial")

    store = run_extract(tiny_llama, TEXTS, out, **RESUME)
    assert counted_shards == [TEXTS[2:4], TEXTS[4:6], TEXTS[6:7]]
    assert store.complete
    assert shard_file_digests(out) == shard_file_digests(uninterrupted.path)
    assert not list(shards.glob(".*.tmp"))
    # Shard 0 was kept as it was, not rewritten.
    now = all_file_state(out)
    assert all(now[k] == v for k, v in kept.items() if k.startswith("shards/00000."))
    for a, b in zip(store.shards, uninterrupted.shards, strict=True):
        assert a["files"] == b["files"]
    store.verify()
    for pooling in ("mean", "last"):
        np.testing.assert_array_equal(store.get(pooling), uninterrupted.get(pooling))


def test_complete_run_with_a_damaged_file_is_repaired(
    tiny_llama, tmp_path, uninterrupted, counted_shards
):
    out = tmp_path / "run"
    run_extract(tiny_llama, TEXTS, out, **RESUME)
    counted_shards.clear()
    cut = out / "shards" / "00000.last.npy"
    cut.write_bytes(cut.read_bytes()[:100])
    run_extract(tiny_llama, TEXTS, out, **RESUME)
    assert counted_shards == [TEXTS[0:2]]
    (out / "shards" / "00003.json").unlink()
    counted_shards.clear()
    store = run_extract(tiny_llama, TEXTS, out, **RESUME)
    assert counted_shards == [TEXTS[6:7]]
    assert shard_file_digests(out) == shard_file_digests(uninterrupted.path)
    assert store.complete


def test_verify_names_the_file_and_a_rerun_repairs_it(tiny_llama, tmp_path):
    store = run_extract(tiny_llama, TEXTS, tmp_path / "run", **RESUME)
    before = shard_file_digests(store.path)
    target = store.path / "shards" / "00002.mean.npy"
    data = bytearray(target.read_bytes())
    data[-3] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError, match=r"00002.mean.npy.*run the same extract again"):
        store.verify()
    with pytest.warns(UserWarning, match=r"shard 2 \(00002.mean.npy does not match its sha256\)"):
        repaired = run_extract(tiny_llama, TEXTS, tmp_path / "run", **RESUME)
    assert shard_file_digests(repaired.path) == before
    repaired.verify()


def test_reading_an_incomplete_run_says_how_to_finish_it(tiny_llama, tmp_path):
    store = run_extract(tiny_llama, TEXTS, tmp_path / "run", **RESUME)
    (store.path / "shards" / "00001.json").unlink()
    partial = ActivationStore(store.path)
    np.testing.assert_array_equal(
        partial.get("mean", rows=[0, 1, 5]), store.get("mean", rows=[0, 1, 5])
    )
    with pytest.raises(StoreSelectionError, match="incomplete.*run the same extract command again"):
        partial.get("mean")
    with pytest.raises(StoreSelectionError, match="not extracted yet"):
        partial.tokens(2)
