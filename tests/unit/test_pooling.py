"""Poolings against hand computations, under left and right padding; parsing and templates."""

from __future__ import annotations

import math

import pytest
import torch

from workbench.activations.pooling import (
    TEMPLATES,
    Pooling,
    apply_template,
    default_pool_over,
    parse_poolings,
    pool,
    real_token_bounds,
    resolve_template,
    text_token_mask,
)
from workbench.errors import PoolingError

LENGTHS = [6, 3, 1, 4]  # real tokens per row; the batch is padded to 6
T, D = 6, 5


def _padded(side: str) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """A random ``[batch, T, D]`` batch, its mask, and each row's real tokens ``[len, D]``.

    Padding positions hold large garbage so that any read of them shows up.
    """
    g = torch.Generator().manual_seed(1234)
    real = [torch.randn(n, D, generator=g) for n in LENGTHS]
    hidden = torch.full((len(LENGTHS), T, D), 1e4)
    mask = torch.zeros(len(LENGTHS), T, dtype=torch.long)
    for i, r in enumerate(real):
        n = len(r)
        sl = slice(0, n) if side == "right" else slice(T - n, T)
        hidden[i, sl] = r
        mask[i, sl] = 1
    return hidden, mask, real


def _one(name: str) -> Pooling:
    (p,) = parse_poolings(name)
    return p


HAND = {
    "mean": lambda r: r.mean(0),
    "max": lambda r: r.amax(0),
    "first": lambda r: r[0],
    "last": lambda r: r[-1],
    "pos:1": lambda r: r[1] if len(r) > 1 else None,
    "pos:-2": lambda r: r[-2] if len(r) > 1 else None,
    "pos:3": lambda r: r[3] if len(r) > 3 else None,
}


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("name", list(HAND))
def test_pool_matches_hand_computation(side, name):
    hidden, mask, real = _padded(side)
    got = pool(hidden, mask, _one(name))
    assert got.shape == (len(LENGTHS), D)
    assert got.dtype == torch.float32
    for i, r in enumerate(real):
        want = HAND[name](r)
        if want is None:  # the text is shorter than the position: NaN, never a padding vector
            assert torch.isnan(got[i]).all(), (name, i)
        else:
            torch.testing.assert_close(got[i], want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["mean", "max", "first", "last", "pos:-3", "pos:2"])
def test_left_and_right_padding_agree(name):
    right = pool(*_padded("right")[:2], _one(name))
    left = pool(*_padded("left")[:2], _one(name))
    torch.testing.assert_close(left, right, equal_nan=True, rtol=0, atol=1e-6)


def test_position_out_of_range_is_nan_for_exactly_the_short_rows():
    hidden, mask, _ = _padded("right")
    out = pool(hidden, mask, _one("pos:4"))  # rows have 6, 3, 1, 4 tokens
    assert torch.isnan(out).all(dim=1).tolist() == [False, True, True, True]
    out = pool(hidden, mask, _one("pos:-4"))
    assert torch.isnan(out).all(dim=1).tolist() == [False, True, True, False]
    out = pool(hidden, mask, _one("pos:-7"))
    assert torch.isnan(out).all()


def test_mean_sqrt_len_and_normalize():
    hidden, mask, real = _padded("left")
    p = Pooling("native", "mean_sqrt_len")
    got = pool(hidden, mask, p)
    for i, r in enumerate(real):
        torch.testing.assert_close(got[i], r.sum(0) / math.sqrt(len(r)))
    normed = pool(hidden, mask, Pooling("native", "mean", normalize=True))
    for i, r in enumerate(real):
        torch.testing.assert_close(normed[i], r.mean(0) / r.mean(0).norm())
    torch.testing.assert_close(normed.norm(dim=1), torch.ones(len(LENGTHS)))


def test_pool_reads_half_precision_into_float32():
    hidden, mask, real = _padded("right")
    got = pool(hidden.half(), mask, _one("mean"))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got[1], real[1].half().float().mean(0))


def test_tokens_pooling_does_not_reduce():
    hidden, mask, _ = _padded("right")
    with pytest.raises(PoolingError, match="does not reduce"):
        pool(hidden, mask, _one("tokens"))


@pytest.mark.parametrize("side", ["right", "left"])
def test_real_token_bounds(side):
    _, mask, _ = _padded(side)
    first, lengths = real_token_bounds(mask)
    assert lengths.tolist() == LENGTHS
    want = [0] * len(LENGTHS) if side == "right" else [T - n for n in LENGTHS]
    assert first.tolist() == want


# -- parsing -----------------------------------------------------------------------------------


def test_parse_names_and_aliases():
    got = parse_poolings("mean, LAST,first,max,tokens,pos:-2,pos:0")
    assert [(p.name, p.kind, p.position) for p in got] == [
        ("mean", "mean", None),
        ("last", "pos", -1),
        ("first", "pos", 0),
        ("max", "max", None),
        ("tokens", "tokens", None),
        ("pos:-2", "pos", -2),
        ("pos:0", "pos", 0),
    ]
    assert [p.ragged for p in got] == [False, False, False, False, True, False, False]
    assert parse_poolings(["all"])[0].name == "tokens"
    assert parse_poolings("mean,mean,last")[0:2] == parse_poolings("mean,last")
    assert _one("pos:-2").filename == "pos_m2"


@pytest.mark.parametrize("spec", ["", " , ", []])
def test_parse_nothing_lists_the_valid_names(spec):
    with pytest.raises(PoolingError, match="no pooling given.*mean"):
        parse_poolings(spec)


def test_parse_unknown_name_lists_the_valid_names():
    with pytest.raises(PoolingError) as info:
        parse_poolings("mean,median")
    message = str(info.value)
    assert "'median'" in message
    for valid in ("mean", "last", "first", "max", "tokens", "native", "pos:K"):
        assert valid in message


def test_parse_bad_position():
    with pytest.raises(PoolingError, match="must be an integer"):
        parse_poolings("pos:two")


@pytest.mark.parametrize(
    ("config", "kind", "position", "normalize"),
    [
        ({"mode": "mean", "normalize": True}, "mean", None, True),
        ({"mode": "mean", "normalize": False}, "mean", None, False),
        ({"mode": "first", "normalize": False}, "pos", 0, False),
        ({"mode": "last", "normalize": True}, "pos", -1, True),
        ({"mode": "max"}, "max", None, False),
        ({"mode": "mean_sqrt_len", "normalize": True}, "mean_sqrt_len", None, True),
    ],
)
def test_native_follows_the_sentence_transformers_config(config, kind, position, normalize):
    (p,) = parse_poolings("native", config)
    assert p == Pooling("native", kind, position, normalize)


def test_native_without_sentence_transformers_config_is_an_error():
    with pytest.raises(PoolingError, match="no sentence-transformers config.*'mean'"):
        parse_poolings("mean,native", None)


# -- templates ---------------------------------------------------------------------------------


def test_builtin_template_by_name():
    assert resolve_template("prompteol") == TEMPLATES["prompteol"]
    assert resolve_template("PromptEOL") == TEMPLATES["prompteol"]
    assert resolve_template(None) is None
    assert resolve_template("") is None


def test_apply_template_returns_the_text_offset():
    template = resolve_template("prompteol")
    text = "Paris is a city."
    model_input, start = apply_template(template, text)
    assert model_input == 'This sentence : "Paris is a city." means in one word:"'
    assert model_input[start : start + len(text)] == text
    assert apply_template(None, text) == (text, 0)


def test_user_template():
    template = resolve_template("Query: {text}\nAnswer:")
    assert template == "Query: {text}\nAnswer:"
    model_input, start = apply_template(template, "why?")
    assert model_input == "Query: why?\nAnswer:" and start == len("Query: ")


@pytest.mark.parametrize("bad", ["no placeholder", "{text} {text} {text}", "prompt-eol", "{txt}"])
def test_bad_template_names_the_builtins_and_the_rule(bad):
    with pytest.raises(PoolingError) as info:
        resolve_template(bad)
    message = str(info.value)
    assert repr(bad) in message
    assert "prompteol" in message and "echo" in message and "{text}" in message


def test_echo_template_reads_the_second_copy():
    template = resolve_template("echo")
    assert template == TEMPLATES["echo"] and template.count("{text}") == 2
    text = "Paris is a city."
    model_input, start = apply_template(template, text)
    assert model_input.count(text) == 2
    assert start == model_input.rindex(text)  # the second copy
    assert model_input[start : start + len(text)] == text
    assert default_pool_over(template) == "text"
    assert default_pool_over(resolve_template("prompteol")) == "input"
    assert default_pool_over(None) == "input"
    # A user template with two copies works the same way.
    model_input, start = apply_template("A: {text} B: {text}!", "xy")
    assert (model_input, start) == ("A: xy B: xy!", 9)


def test_text_token_mask_selects_tokens_overlapping_the_text():
    # model input 'Q: ab cd!' with the text 'ab cd' at 3..8; (0, 0) is a special token.
    offsets = [(0, 0), (0, 1), (1, 2), (3, 5), (6, 8), (8, 9), (0, 0)]
    assert text_token_mask(offsets, 3, 5) == [False, False, False, True, True, False, False]
    # A token straddling the boundary overlaps the text and is kept.
    assert text_token_mask([(0, 4), (4, 9)], 3, 5) == [True, True]


@pytest.mark.parametrize("name", ["mean", "max", "first", "last"])
def test_row_without_pooled_tokens_is_nan(name):
    hidden, mask, real = _padded("right")
    mask[2] = 0
    out = pool(hidden, mask, _one(name))
    assert torch.isnan(out[2]).all()
    torch.testing.assert_close(out[0], HAND[name](real[0]))
