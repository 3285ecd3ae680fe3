"""The one activation naming scheme: names, layers, ranges and patterns."""

from __future__ import annotations

import pytest

from workbench.activations import hook_names as hn
from workbench.errors import LayerOutOfRangeError, UnknownHookPointError

N = 4  # blocks, so residual layers are 0..4


def test_block_hook_names_every_component():
    assert hn.block_hook(2) == "blocks.2.hook_resid_post"
    assert hn.block_hook(0, "attn_out") == "blocks.0.hook_attn_out"
    assert hn.block_hook(3, "mlp_out") == "blocks.3.hook_mlp_out"


def test_block_hook_unknown_component_lists_valid_ones():
    with pytest.raises(UnknownHookPointError) as info:
        hn.block_hook(0, "mlp_in")
    message = str(info.value)
    assert "mlp_in" in message
    for component in hn.COMPONENTS:
        assert component in message


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("hook_embed", (None, "embed")),
        ("ln_final.hook_normalized", (None, "final_norm")),
        ("blocks.0.hook_resid_post", (0, "resid_post")),
        ("blocks.11.hook_attn_out", (11, "attn_out")),
        ("blocks.-1.hook_mlp_out", (-1, "mlp_out")),
    ],
)
def test_parse_hook(name, parsed):
    assert hn.parse_hook(name) == parsed


@pytest.mark.parametrize(
    "bad", ["blocks.x.hook_resid_post", "blocks.1.hook_resid", "block.1.hook_mlp_out", "embed", ""]
)
def test_parse_hook_rejects_other_names_and_shows_the_scheme(bad):
    with pytest.raises(UnknownHookPointError) as info:
        hn.parse_hook(bad)
    message = str(info.value)
    assert repr(bad) in message
    assert "hook_embed" in message and "blocks.{l}.hook_resid_post" in message
    assert isinstance(info.value, KeyError)  # subclasses the built-in a caller expects


@pytest.mark.parametrize("final_norm", [True, False])
def test_residual_layers_follow_hidden_states(final_norm):
    names = [hn.resid_hook(layer, N, final_norm) for layer in range(N + 1)]
    last = "ln_final.hook_normalized" if final_norm else "blocks.3.hook_resid_post"
    assert names == [
        "hook_embed",
        "blocks.0.hook_resid_post",
        "blocks.1.hook_resid_post",
        "blocks.2.hook_resid_post",
        last,
    ]
    # hook_layer inverts resid_hook.
    assert [hn.hook_layer(n, N, final_norm) for n in names] == list(range(N + 1))


def test_hook_layer_of_non_residual_points():
    assert hn.hook_layer("blocks.1.hook_attn_out", N, True) is None
    assert hn.hook_layer("blocks.1.hook_mlp_out", N, False) is None
    # The raw output of the last block is not hidden_states[n] when a final norm follows it.
    assert hn.hook_layer("blocks.3.hook_resid_post", N, True) is None
    assert hn.hook_layer("blocks.3.hook_resid_post", N, False) == N


def test_all_hook_points_in_forward_order():
    names = hn.all_hook_points(2, final_norm=True)
    assert names == [
        "hook_embed",
        "blocks.0.hook_attn_out",
        "blocks.0.hook_mlp_out",
        "blocks.0.hook_resid_post",
        "blocks.1.hook_attn_out",
        "blocks.1.hook_mlp_out",
        "blocks.1.hook_resid_post",
        "ln_final.hook_normalized",
    ]
    bare = hn.all_hook_points(2, final_norm=False, has_attn=False, has_mlp=False)
    assert bare == ["hook_embed", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("all", [0, 1, 2, 3, 4]),
        ("ALL ", [0, 1, 2, 3, 4]),
        (2, [2]),
        (-1, [4]),
        (-5, [0]),
        ([0, -1, 2], [0, 4, 2]),
        ("0,2,-1", [0, 2, 4]),
        ("1:3", [1, 2]),
        ("2:", [2, 3, 4]),
        (":2", [0, 1]),
        ("-2:", [3, 4]),
        ("0, 1:3, -1", [0, 1, 2, 4]),
        ([1, 1, -4], [1]),  # duplicates (also via negative indices) are dropped, order kept
        (range(3), [0, 1, 2]),
    ],
)
def test_normalize_layers(spec, expected):
    assert hn.normalize_layers(spec, N, "toy") == expected


@pytest.mark.parametrize("bad", [5, -6, [0, 9], "0,7", "1:9", "-9:2", [99]])
def test_out_of_range_layer_message_gives_the_valid_range(bad):
    with pytest.raises(LayerOutOfRangeError) as info:
        hn.normalize_layers(bad, N, "toy-model")
    message = str(info.value)
    assert "toy-model has layers 0..4" in message
    assert "-5" in message  # the most negative valid index
    assert "layers='all'" in message  # and the fix
    assert isinstance(info.value, IndexError)


def test_empty_layer_selection_is_an_error():
    with pytest.raises(LayerOutOfRangeError, match="no layers selected.*0..4"):
        hn.normalize_layers([], N, "toy")
    with pytest.raises(LayerOutOfRangeError, match="no layers selected"):
        hn.normalize_layers("2:2", N, "toy")


AVAILABLE = hn.all_hook_points(3, final_norm=True)


def test_expand_star_pattern():
    assert hn.expand_hook_patterns(["blocks.*.hook_mlp_out"], AVAILABLE) == [
        "blocks.0.hook_mlp_out",
        "blocks.1.hook_mlp_out",
        "blocks.2.hook_mlp_out",
    ]
    assert hn.expand_hook_patterns(["blocks.1.*"], AVAILABLE) == [
        "blocks.1.hook_attn_out",
        "blocks.1.hook_mlp_out",
        "blocks.1.hook_resid_post",
    ]


def test_expand_returns_forward_order_without_duplicates():
    got = hn.expand_hook_patterns(
        [
            "ln_final.hook_normalized",
            "blocks.2.hook_attn_out",
            "hook_embed",
            "blocks.*.hook_attn_out",
        ],
        AVAILABLE,
    )
    assert got == [
        "hook_embed",
        "blocks.0.hook_attn_out",
        "blocks.1.hook_attn_out",
        "blocks.2.hook_attn_out",
        "ln_final.hook_normalized",
    ]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("blocks.-1.hook_mlp_out", "blocks.2.hook_mlp_out"),
        ("blocks.-3.hook_resid_post", "blocks.0.hook_resid_post"),
        ("blocks.-2.hook_attn_out", "blocks.1.hook_attn_out"),
    ],
)
def test_expand_negative_block_index(pattern, expected):
    assert hn.expand_hook_patterns([pattern], AVAILABLE) == [expected]


@pytest.mark.parametrize(
    "pattern", ["blocks.3.hook_mlp_out", "blocks.-4.hook_mlp_out", "blocks.*.hook_mlp_in", "nope"]
)
def test_expand_unmatched_pattern_lists_what_exists(pattern):
    with pytest.raises(UnknownHookPointError) as info:
        hn.expand_hook_patterns([pattern], AVAILABLE)
    message = str(info.value)
    assert repr(pattern) in message
    assert "blocks 0..2" in message
    assert "hook_embed" in message


def test_star_stands_for_one_name_part():
    # '*' does not cross dots: 'blocks.*' is not a prefix match, '*' alone is only 'hook_embed'.
    assert hn.expand_hook_patterns(["*"], AVAILABLE) == ["hook_embed"]
    with pytest.raises(UnknownHookPointError):
        hn.expand_hook_patterns(["blocks.*"], AVAILABLE)
