"""The bundled real models: extraction equals Hugging Face and sentence-transformers outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import workbench

pytestmark = pytest.mark.slow

TEXTS = [
    "The city of Paris is in France.",
    "Tokyo",
    "Water boils at 100 degrees Celsius at sea level.",
    "Is this sentence true or false?",
    "A slightly longer text, with commas, numbers like 42 and 3.14, and a question: why?",
    "no",
    "Berlin is the capital of Germany, and Madrid is the capital of Spain.",
    "Émile a mangé une crêpe à Montréal.",
]


def hidden_states(model, tokenizer, text: str) -> torch.Tensor:
    """Hugging Face hidden states of one unpadded text, ``[layers + 1, T, d]``."""
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = model(input_ids=ids, output_hidden_states=True)
    return torch.stack([h[0] for h in out.hidden_states]).float()


@pytest.mark.parametrize("name", ["smollm2-135m", "minilm-l6"])
def test_bundled_table_matches_the_loaded_model(name, request):
    """The table's numbers are what the weights say (not the table compared with itself)."""
    from workbench.models import BUNDLED

    entry = BUNDLED[name]
    lm = request.getfixturevalue("smollm2" if name == "smollm2-135m" else "minilm")
    config = lm.model.config
    blocks = lm.model.get_submodule(lm.blocks_path)
    assert entry.n_layers == lm.n_layers == config.num_hidden_layers == len(blocks)
    assert entry.d_model == lm.d_model == config.hidden_size
    assert entry.kind == lm.kind
    assert (entry.kind == "decoder") == bool(
        getattr(config, "is_decoder", False) or config.architectures[0].endswith("ForCausalLM")
    )
    if entry.gguf_file:
        assert (entry.path() / entry.gguf_file).is_file() and lm.gguf_file == entry.gguf_file
    # one embed, three per block (resid_post, attn_out, mlp_out), one final norm if present
    assert len(lm.hook_points()) == 1 + 3 * len(blocks) + int(lm.final_norm)


def test_smollm2_structure(smollm2):
    assert smollm2.final_norm and smollm2.blocks_path == "model.layers"


@pytest.fixture(scope="module")
def smollm2_reference(smollm2):
    return [hidden_states(smollm2.model, smollm2.tokenizer, t) for t in TEXTS]


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_smollm2_every_layer_equals_hf_hidden_states(
    smollm2, smollm2_reference, tmp_path, padding_side
):
    store = workbench.extract(
        smollm2,
        TEXTS,
        out=tmp_path / "run",
        layers="all",
        pooling="mean,last",
        padding_side=padding_side,
        progress=False,
    )
    assert store.get("last").shape == (len(TEXTS), 31, 576)
    want_last = torch.stack([s[:, -1] for s in smollm2_reference])
    want_mean = torch.stack([s.mean(1) for s in smollm2_reference])
    for got, want in ((store.get("last"), want_last), (store.get("mean"), want_mean)):
        got = torch.from_numpy(got)
        # Relative to each layer's scale: SmolLM2's residual stream grows to the hundreds.
        scale = want.abs().amax(dim=(0, 2), keepdim=True)
        torch.testing.assert_close(got / scale, want / scale, rtol=0, atol=1e-5)


def test_minilm_native_pooling_equals_sentence_transformers(minilm, tmp_path):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    assert minilm.kind == "encoder" and not minilm.final_norm
    assert minilm.sentence_pooling == {"mode": "mean", "normalize": True}
    st = sentence_transformers.SentenceTransformer(minilm.source, device="cpu")
    want = st.encode(TEXTS, convert_to_numpy=True, batch_size=3)
    store = workbench.extract(
        minilm, TEXTS, out=tmp_path / "run", layers=[-1], pooling="native", progress=False
    )
    got = store.layer(-1, "native")
    assert got.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_minilm_hidden_states_equal_automodel(minilm, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(minilm.source).eval()
    tokenizer = AutoTokenizer.from_pretrained(minilm.source)
    store = workbench.extract(
        minilm,
        TEXTS,
        out=tmp_path / "run",
        layers="all",
        pooling="mean,first,tokens",
        padding_side="left",
        progress=False,
    )
    assert sorted(store.layers) == list(range(7))
    for row, text in enumerate(TEXTS):
        states = hidden_states(model, tokenizer, text)  # [7, T, 384]
        assert states.shape[0] == 7
        torch.testing.assert_close(
            torch.from_numpy(store.token_states(row)), states.transpose(0, 1), rtol=0, atol=1e-5
        )
        torch.testing.assert_close(
            torch.from_numpy(store.get("mean", rows=[row])[0]), states.mean(1), rtol=0, atol=1e-5
        )
        torch.testing.assert_close(
            torch.from_numpy(store.get("first", rows=[row])[0]), states[:, 0], rtol=0, atol=1e-5
        )
