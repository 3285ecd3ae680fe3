"""The tuned lens (Belrose et al. 2023): one affine translator per layer, trained so that the
final norm and unembedding read layer ``l`` the way they read the last layer.

Translator ``l`` maps a residual state ``h`` ``[..., d_model]`` to ``h + A_l h + b_l``; it starts
at zero (``A = 0, b = 0``), where the tuned lens *is* the logit lens, and is trained by minimising
``KL(p_final || p_lens_l)`` between the model's own next-token distribution and the lens's, over
the tokens of a text corpus. Only the translators learn; the model is frozen.

Position 0 is left out of training and evaluation (``skip_first=1``): in models without a BOS
token, such as SmolLM2, the first token is an attention sink whose residual norm is ~100x the
others' (22 000 vs ~200 on SmolLM2-135M), and it would dominate both the loss and the averages.

Saved as ``tuned_lens.safetensors`` (``translators.{layer}.weight`` ``[d_model, d_model]`` and
``.bias`` ``[d_model]``) + ``config.json`` recording the base model's ``weights_fingerprint``;
loading it for another model is refused with both hashes. Training checkpoints atomically to
``checkpoint.safetensors`` (translators, Adam state, step, loss history) and resumes from it:
an interrupted run continued with the same command ends with the same weights.

>>> lens = TunedLens(lm).fit(texts, steps=200, out="runs/lens-smollm2")   # doctest: +SKIP
>>> lens.run("The capital of France is", target=" Paris").target_rank     # doctest: +SKIP
>>> lens_report(lm, held_out, lens).table                                 # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from .._version import __version__
from ..artifacts import load_tensors, read_json, read_tensor_metadata, save_tensors, write_json
from ..errors import EmptyDatasetError, WorkbenchError
from ..models import hook_names, hooks
from .logit import LogitLens, hidden_states

WEIGHTS = "tuned_lens.safetensors"
CONFIG = "config.json"
CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_JSON = "checkpoint.json"  # its sha256, written after it (the commit point)
FORMAT = "workbench.tuned_lens/1"

#: Training options that must match to resume a checkpoint (``steps`` may grow).
_RESUME_KEYS = (
    "layers",
    "init",
    "init_texts",
    "ridge",
    "batch_size",
    "max_length",
    "tokens_per_step",
    "lr",
    "warmup",
    "weight_decay",
    "seed",
    "skip_first",
    "n_texts",
    "texts_sha256",
)


class LensCheckpointError(WorkbenchError, ValueError):
    """A tuned-lens checkpoint that is missing, malformed, or trained for another model or with
    other options."""


@contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Switch off gradients of ``module``'s parameters inside the context (restored after)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _texts_sha256(texts: Sequence[str]) -> str:
    import hashlib

    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8") + b"\0")
    return h.hexdigest()


def _batch_ids(lm: Any, texts: Sequence[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``(input_ids, attention_mask)`` ``[batch, pos]``, truncated to ``max_length``."""
    rows = [x[:max_length] for x in lm.tokenizer(list(texts), add_special_tokens=True)["input_ids"]]
    width = max(len(r) for r in rows)
    pad = lm.tokenizer.pad_token_id
    pad = 0 if pad is None else int(pad)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[b, : len(r)] = 1
    return ids, mask


class TunedLens(LogitLens):
    """Logit lens with a trained affine translator per residual layer.

    Args:
        lm: a decoder ``LoadedModel``.
        layers: residual layers that get a translator (hidden-state indices; ``"all"`` means
            ``0..n_layers-1``). The last layer is the model's output and is never translated;
            layers without a translator are read as by the logit lens.

    Attributes:
        translators: ``{str(layer): nn.Linear(d_model, d_model)}``, zero at initialisation.
        history_: per-step mean KL over the trained layers (after ``fit``).
        config_: what was trained, how, and against which weights.

    Examples:
        >>> lens = TunedLens(lm, layers="10:20").fit(texts, steps=100)     # doctest: +SKIP
        >>> lens.save("runs/lens"); TunedLens.load("runs/lens", lm)          # doctest: +SKIP
    """

    name = "tuned"

    def __init__(self, lm: Any, layers: str | int | Sequence[int] = "all") -> None:
        super().__init__(lm)
        n = lm.n_layers
        chosen = hook_names.normalize_layers(layers, n, lm.name)
        self.layers = sorted(x for x in chosen if x != n)
        if not self.layers:
            raise ValueError(
                f"layers={layers!r} selects only the last layer ({n}), which is the model's own "
                f"output and has no translator: choose layers in 0..{n - 1}"
            )
        d = lm.d_model
        self.translators = nn.ModuleDict()
        for layer in self.layers:
            lin = nn.Linear(d, d)
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
            self.translators[str(layer)] = lin
        self.translators.to(lm.device)
        self.history_: list[float] = []
        self.config_: dict[str, Any] = self._base_config()

    def _base_config(self) -> dict[str, Any]:
        lm = self.lm
        return {
            "format": FORMAT,
            "workbench_version": __version__,
            "model": {
                "spec": lm.name,
                "weights_fingerprint": lm.weights_fingerprint,
                "n_layers": lm.n_layers,
                "d_model": lm.d_model,
                "class": type(lm.model).__name__,
            },
            "layers": self.layers,
            "translator": "h + W h + b (W, b zero-initialised), float32",
            "training": None,
        }

    def transform(self, hidden: torch.Tensor, layer: int) -> torch.Tensor:
        """``h + A_l h + b_l`` for layers with a translator, ``h`` otherwise; ``[..., d_model]``."""
        t = self.translators[str(layer)] if str(layer) in self.translators else None
        if t is None:
            return hidden
        h = hidden.float()
        return (h + t(h)).to(hidden.dtype)

    # -- training ----------------------------------------------------------------------------------

    def fit(
        self,
        texts: Sequence[str],
        steps: int = 200,
        init: str = "lstsq",
        init_texts: int = 256,
        ridge: float = 1e-3,
        batch_size: int = 8,
        max_length: int = 32,
        tokens_per_step: int = 64,
        lr: float = 1e-3,
        warmup: int = 10,
        weight_decay: float = 0.0,
        seed: int = 0,
        skip_first: int = 1,
        out: str | Path | None = None,
        checkpoint_every: int = 20,
        progress: bool = True,
        dataset: dict[str, Any] | None = None,
    ) -> TunedLens:
        """Fit every translator: least squares to the last block's output, then AdamW on
        ``KL(p_final || p_lens)``.

        ``init="lstsq"`` first solves, per layer, the ridge regression from ``h_l`` to the
        input of the final norm over the tokens of the first ``init_texts`` texts (the linear
        shortcut of Din et al. 2023; closed form, a few seconds), which the KL steps then refine;
        this matters on a CPU, where each KL step costs ``layers * tokens_per_step``
        unembeddings. ``init="identity"`` starts from the logit lens as in Belrose et al.

        Each step reads ``batch_size`` texts (in a seeded order, epoch after epoch), draws
        ``tokens_per_step`` real tokens at positions ``>= skip_first`` and trains every layer on
        those tokens; the cost per step is ``layers * tokens_per_step`` unembeddings.

        Args:
            texts: training corpus (never the texts you evaluate on).
            steps: KL optimiser steps in total (a resumed run continues up to ``steps``; 0 keeps
                the least-squares translators).
            init: ``"lstsq"`` or ``"identity"``.
            init_texts: texts (from the start of ``texts``) for the least-squares fit.
            ridge: ridge penalty of the least-squares fit, relative to the mean variance.
            batch_size: texts per step.
            max_length: tokens per text at most (truncated).
            tokens_per_step: tokens sampled per step (shared by all layers).
            lr: Adam learning rate (linear warm-up over ``warmup`` steps, then linear decay to 0).
            warmup: warm-up steps.
            weight_decay: AdamW weight decay.
            seed: order of the texts and choice of the tokens.
            skip_first: leading positions to leave out (1: the attention sink).
            out: folder for ``checkpoint.safetensors`` and, at the end, the saved lens; an
                existing checkpoint there is resumed.
            checkpoint_every: steps between checkpoints.
            progress: show a tqdm bar with the running KL.
            dataset: a description of the corpus to record in the config.

        Returns:
            ``self``, trained.
        """
        texts = [t for t in texts if isinstance(t, str) and t.strip()]
        if not texts:
            raise EmptyDatasetError("no non-empty texts to train the tuned lens on")
        if init not in ("lstsq", "identity"):
            raise ValueError(f"init={init!r}: use 'lstsq' or 'identity'")
        if steps < 0 or batch_size < 1 or tokens_per_step < 1 or max_length < skip_first + 2:
            raise ValueError(
                f"steps={steps}, batch_size={batch_size}, tokens_per_step={tokens_per_step}, "
                f"max_length={max_length}: steps must be >= 0, batch and tokens >= 1, max_length "
                f">= skip_first + 2"
            )
        options = {
            "layers": self.layers,
            "init": init,
            "init_texts": init_texts,
            "ridge": ridge,
            "batch_size": batch_size,
            "max_length": max_length,
            "tokens_per_step": tokens_per_step,
            "lr": lr,
            "warmup": warmup,
            "weight_decay": weight_decay,
            "seed": seed,
            "skip_first": skip_first,
            "n_texts": len(texts),
            "texts_sha256": _texts_sha256(texts),
        }
        params = list(self.translators.parameters())
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        folder = Path(out) if out is not None else None
        start, seconds = 0, 0.0
        if folder is not None and (folder / CHECKPOINT).is_file():
            start, seconds = self._resume(folder / CHECKPOINT, opt, options)
        elif init == "lstsq":
            t_init = time.perf_counter()
            self._fit_lstsq(texts[:init_texts], batch_size, max_length, skip_first, ridge, progress)
            seconds += time.perf_counter() - t_init
            if folder is not None:
                self._checkpoint(folder / CHECKPOINT, opt, options, 0, seconds)
        lm = self.lm
        n_layers = lm.n_layers
        bar = None
        if progress and steps > start:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, initial=start, desc="tuned lens: KL", unit="step")
        t0 = time.perf_counter()
        try:
            with _frozen(lm.model), hooks.eval_mode(lm.model):
                for step in range(start, steps):
                    for group in opt.param_groups:
                        group["lr"] = lr * _lr_factor(step, steps, warmup)
                    idx = _text_indices(len(texts), step, batch_size, seed)
                    ids, mask = _batch_ids(lm, [texts[i] for i in idx], max_length)
                    states = hidden_states(lm, ids, mask)
                    sel = _sample_tokens(mask, skip_first, tokens_per_step, seed, step)
                    if sel is None:
                        continue  # no token past skip_first in this batch: nothing to learn
                    with torch.no_grad():
                        target = self.log_probs(states[n_layers][sel], n_layers)  # [S, vocab]
                        p_target = target.exp()
                    opt.zero_grad(set_to_none=True)
                    total = 0.0
                    for layer in self.layers:
                        logq = self.log_probs(states[layer][sel], layer)
                        kl = (p_target * (target - logq)).sum(-1).mean()
                        (kl / len(self.layers)).backward()
                        total += float(kl.detach())
                    opt.step()
                    self.history_.append(total / len(self.layers))
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(kl=f"{self.history_[-1]:.3f}")
                    done = step + 1
                    if folder is not None and (done % checkpoint_every == 0 or done == steps):
                        self._checkpoint(
                            folder / CHECKPOINT,
                            opt,
                            options,
                            done,
                            seconds + time.perf_counter() - t0,
                        )
        finally:
            if bar is not None:
                bar.close()
        seconds += time.perf_counter() - t0
        self.config_["training"] = {
            **options,
            "steps": steps,
            "optimizer": "AdamW",
            "seconds": round(seconds, 1),
            "final_kl": self.history_[-1] if self.history_ else None,
            "dataset": dataset,
        }
        if folder is not None:
            self.save(folder)
        return self

    @torch.no_grad()
    def _fit_lstsq(
        self,
        texts: Sequence[str],
        batch_size: int,
        max_length: int,
        skip_first: int,
        ridge: float,
        progress: bool,
    ) -> None:
        """Set translator ``l`` to the ridge regression ``h_l -> x_final`` (with intercept), where
        ``x_final`` is the final norm's input (the last block's output)."""
        lm, d = self.lm, self.lm.d_model
        n = lm.n_layers
        xx = {layer: torch.zeros(d + 1, d + 1, dtype=torch.float64) for layer in self.layers}
        xy = {layer: torch.zeros(d + 1, d, dtype=torch.float64) for layer in self.layers}
        last = hook_names.block_hook(n - 1)  # the final norm's input
        batches = range(0, len(texts), batch_size)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="tuned lens: least squares", unit="batch")
        with hooks.eval_mode(lm.model), hooks.read(lm, [last]) as seen:
            for start in batches:
                ids, mask = _batch_ids(lm, texts[start : start + batch_size], max_length)
                states = hidden_states(lm, ids, mask)
                keep = mask.bool().clone()
                keep[:, :skip_first] = False
                if not keep.any():
                    continue
                target = seen[last][keep].double().cpu()
                for layer in self.layers:
                    x = states[layer][keep].double().cpu()
                    x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
                    xx[layer] += x.T @ x
                    xy[layer] += x.T @ target
        eye = torch.eye(d, dtype=torch.float64)
        for layer in self.layers:
            a = xx[layer]
            if float(a[d, d]) == 0:
                continue  # no tokens: keep the identity
            penalty = torch.zeros_like(a)
            penalty[:d, :d] = eye * (ridge * float(a[:d, :d].diagonal().mean()))
            sol = torch.linalg.solve(a + penalty, xy[layer])  # [d+1, d]
            lin = cast(nn.Linear, self.translators[str(layer)])  # built as Linear in __init__
            lin.weight.copy_((sol[:d].T - eye).to(lin.weight))
            lin.bias.copy_(sol[d].to(lin.bias))

    def _checkpoint(
        self,
        path: Path,
        opt: torch.optim.Optimizer,
        options: dict[str, Any],
        step: int,
        seconds: float,
    ) -> None:
        tensors = {
            f"translators.{k}": v.detach().cpu().contiguous()
            for k, v in self.translators.state_dict().items()
        }
        state = opt.state_dict()
        for i, s in state["state"].items():
            for key, value in s.items():
                tensors[f"optimizer.{i}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
        meta = {
            "options": json.dumps(options),
            "step": str(step),
            "seconds": str(seconds),
            "history": json.dumps(self.history_),
            "param_groups": json.dumps(state["param_groups"]),
            "weights_fingerprint": self.lm.weights_fingerprint,
        }
        info = save_tensors(path, tensors, metadata=meta)
        write_json(path.parent / CHECKPOINT_JSON, {"files": {path.name: info}})

    def _resume(
        self, path: Path, opt: torch.optim.Optimizer, options: dict[str, Any]
    ) -> tuple[int, float]:
        fix = f"delete {path} to train from the start, or choose another --out folder"
        sidecar = path.parent / CHECKPOINT_JSON
        info = (
            read_json(sidecar, "checkpoint record", fix).get("files", {}).get(path.name)
            if sidecar.is_file()
            else None
        )
        tensors = load_tensors(path, info, fix=fix, framework="pt", what="tuned-lens checkpoint")
        meta = read_tensor_metadata(path, fix)
        _check_fingerprint(meta.get("weights_fingerprint"), self.lm, path)
        old = json.loads(meta.get("options", "{}"))
        diff = {k: (old.get(k), options[k]) for k in _RESUME_KEYS if old.get(k) != options[k]}
        if diff:
            raise LensCheckpointError(
                f"{path} was trained with other options (checkpoint vs now): {diff}; rerun with "
                "the same texts and options to resume, or choose another --out folder"
            )
        self.translators.load_state_dict(
            {
                k.removeprefix("translators."): v.to(self.lm.device)
                for k, v in tensors.items()
                if k.startswith("translators.")
            }
        )
        state: dict[str, Any] = {"state": {}, "param_groups": json.loads(meta["param_groups"])}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, i, name = key.split(".", 2)
                state["state"].setdefault(int(i), {})[name] = value.to(self.lm.device)
        opt.load_state_dict(state)
        self.history_ = json.loads(meta.get("history", "[]"))
        return int(meta["step"]), float(meta.get("seconds", 0.0))

    # -- saving ------------------------------------------------------------------------------------

    def save(self, out: str | Path) -> Path:
        """Write ``tuned_lens.safetensors`` + ``config.json`` into ``out`` (atomically)."""
        folder = Path(out)
        tensors = {
            f"translators.{k}": v.detach().cpu().contiguous()
            for k, v in self.translators.state_dict().items()
        }
        info = save_tensors(folder / WEIGHTS, tensors, metadata={"format": FORMAT})
        write_json(
            folder / CONFIG, {**self.config_, "history": self.history_, "files": {WEIGHTS: info}}
        )
        return folder

    @classmethod
    def load(cls, path: str | Path, lm: Any) -> TunedLens:
        """A lens saved by :meth:`save`, for ``lm``; refused if ``lm`` has other weights."""
        folder = Path(path)
        if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
            raise LensCheckpointError(
                f"{folder} holds no tuned lens: expected {CONFIG} and {WEIGHTS} (written by "
                "TunedLens.save or `workbench lens train-tuned --out`)"
            )
        fix = "train it again (`workbench lens train-tuned --out`) or restore a copy"
        config = read_json(folder / CONFIG, "tuned-lens config", fix)
        if config.get("format") != FORMAT:
            raise LensCheckpointError(
                f"{folder / CONFIG} has format {config.get('format')!r}, expected {FORMAT!r}"
            )
        _check_fingerprint(
            config["model"].get("weights_fingerprint"), lm, folder, config["model"].get("spec")
        )
        lens = cls(lm, layers=config["layers"])
        tensors = load_tensors(
            folder / WEIGHTS,
            config.get("files", {}).get(WEIGHTS),
            fix=fix,
            framework="pt",
            device=str(lm.device),
            what="tuned lens",
        )
        lens.translators.load_state_dict(
            {k.removeprefix("translators."): v for k, v in tensors.items()}
        )
        lens.config_ = {k: v for k, v in config.items() if k not in ("history", "files")}
        lens.history_ = list(config.get("history", []))
        return lens


def _check_fingerprint(recorded: str | None, lm: Any, where: Path, spec: str | None = None) -> None:
    if recorded != lm.weights_fingerprint:
        raise LensCheckpointError(
            f"{where} was trained for another model ({spec or 'unknown'}, weights_fingerprint "
            f"{recorded}) and {lm.name} has weights_fingerprint {lm.weights_fingerprint}: a "
            "tuned lens only fits the weights it was trained on — load the matching model or "
            "train a lens for this one (`workbench lens train-tuned`)"
        )


def _lr_factor(step: int, steps: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then linear decay to zero at ``steps``."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (steps - step) / max(1, steps - warmup))


def _text_indices(n: int, step: int, batch_size: int, seed: int) -> list[int]:
    """Indices of the texts of ``step``: consecutive slices of a seeded permutation per epoch."""
    out = []
    for j in range(step * batch_size, (step + 1) * batch_size):
        epoch, k = divmod(j, n)
        out.append(int(np.random.default_rng([seed, epoch]).permutation(n)[k]))
        if len(out) == n:
            break
    return out


def _sample_tokens(
    mask: torch.Tensor, skip_first: int, k: int, seed: int, step: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(rows, positions)`` of up to ``k`` real tokens at positions ``>= skip_first``."""
    keep = mask.bool().clone()
    keep[:, :skip_first] = False
    rows, pos = keep.nonzero(as_tuple=True)
    if len(rows) == 0:
        return None
    if len(rows) > k:
        pick = np.sort(np.random.default_rng([seed, step, 1]).choice(len(rows), k, replace=False))
        rows, pos = rows[pick], pos[pick]
    return rows, pos


# ------------------------------------------------------------------------------------------------
# evaluation


@dataclass
class LensReport:
    """Per-layer KL to the model's output and perplexity of the lenses on held-out text.

    Attributes:
        table: DataFrame with ``layer``, ``kl_logit``, ``kl_tuned``, ``ppl_logit``, ``ppl_tuned``
            (KL in nats per token, ``KL(p_final || p_lens)``; perplexity of the actual next token).
        n_texts, n_tokens: the held-out texts and the tokens averaged over.
        ppl_model: perplexity of the model itself on the same tokens.
        skip_first: leading positions left out.
        seconds: evaluation time.
    """

    table: Any
    n_texts: int
    n_tokens: int
    ppl_model: float
    skip_first: int
    seconds: float
    notes: dict[str, Any] = field(default_factory=dict)

    def to_markdown(self) -> str:
        """The table as Markdown: KL and perplexity per layer."""
        cols = (
            ["layer"]
            + [c for c in self.table.columns if c.startswith("kl_")]
            + [c for c in self.table.columns if c.startswith("ppl_")]
        )
        lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
        for _, row in self.table.iterrows():
            cells = [str(int(row["layer"]))] + [
                f"{row[c]:.3f}" if c.startswith("kl") else f"{row[c]:.4g}" for c in cols[1:]
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


@torch.no_grad()
def lens_report(
    lm: Any,
    texts: Sequence[str],
    tuned: TunedLens | Mapping[str, TunedLens] | None = None,
    layers: str | int | Sequence[int] | None = None,
    batch_size: int = 8,
    max_length: int = 32,
    skip_first: int = 1,
    progress: bool = True,
) -> LensReport:
    """Compare the logit lens (and a tuned lens) with the model's output on held-out ``texts``.

    For each layer: mean ``KL(p_final || p_lens)`` over the tokens at positions
    ``skip_first .. len-2`` (those with a next token), and the perplexity of the lens's
    prediction of that next token.

    Args:
        lm: the decoder.
        texts: held-out texts (not used to train ``tuned``).
        tuned: a trained ``TunedLens`` for ``lm`` (columns ``*_tuned``), several as
            ``{name: lens}`` (columns ``*_{name}``), or None for the logit lens alone.
        layers: layers to evaluate (default: all, or the tuned lens's layers and the last).
        batch_size: texts per forward pass.
        max_length: texts are truncated to this many tokens.
        skip_first: leading positions left out (1: the attention sink).
        progress: show a tqdm bar.
    """
    import pandas as pd

    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise EmptyDatasetError("no non-empty held-out texts to evaluate the lenses on")
    n = lm.n_layers
    extra: dict[str, TunedLens] = (
        {} if tuned is None else {"tuned": tuned} if isinstance(tuned, TunedLens) else dict(tuned)
    )
    for trained_lens in extra.values():
        if trained_lens.lm is not lm:
            _check_fingerprint(
                trained_lens.lm.weights_fingerprint,
                lm,
                Path("the tuned lens"),
                trained_lens.lm.name,
            )
    if layers is None:
        trained = sorted({x for lens in extra.values() for x in lens.layers})
        chosen = trained + [n] if extra else list(range(n + 1))
    else:
        chosen = hook_names.normalize_layers(layers, n, lm.name)
    logit = LogitLens(lm)
    lenses: dict[str, LogitLens] = {"logit": logit, **extra}
    kl = {(name, layer): 0.0 for name in lenses for layer in chosen}
    ce = dict(kl)
    ce_model, count = 0.0, 0
    t0 = time.perf_counter()
    batches = range(0, len(texts), batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="lens report", unit="batch")
    with hooks.eval_mode(lm.model):
        for start in batches:
            ids, mask = _batch_ids(lm, texts[start : start + batch_size], max_length)
            keep = mask.bool().clone()
            keep[:, :skip_first] = False
            keep[:, :-1] &= mask[:, 1:].bool()  # a next token exists
            keep[:, -1] = False
            rows, pos = keep.nonzero(as_tuple=True)
            if len(rows) == 0:
                continue
            nxt = ids[rows, pos + 1].to(lm.device)
            states = hidden_states(lm, ids, mask)
            final = logit.log_probs(states[n][rows, pos], n)  # [S, vocab]
            p_final = final.exp()
            ce_model -= float(final.gather(-1, nxt[:, None]).sum())
            count += len(rows)
            for layer in chosen:
                for name, lens in lenses.items():
                    logq = lens.log_probs(states[layer][rows, pos], layer)
                    kl[name, layer] += float((p_final * (final - logq)).sum())
                    ce[name, layer] -= float(logq.gather(-1, nxt[:, None]).sum())
    if count == 0:
        raise EmptyDatasetError(
            f"the held-out texts have no token past position {skip_first} with a next token: "
            "use longer texts"
        )
    records = []
    for layer in chosen:
        rec: dict[str, Any] = {"layer": layer}
        for name in lenses:
            rec[f"kl_{name}"] = kl[name, layer] / count
            rec[f"ppl_{name}"] = math.exp(ce[name, layer] / count)
        records.append(rec)
    return LensReport(
        table=pd.DataFrame(records),
        n_texts=len(texts),
        n_tokens=count,
        ppl_model=math.exp(ce_model / count),
        skip_first=skip_first,
        seconds=time.perf_counter() - t0,
    )


__all__ = ["LensCheckpointError", "LensReport", "TunedLens", "lens_report"]
