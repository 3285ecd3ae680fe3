"""A trained embedding inverter (GEIA / vec2text hypothesis model): the embedding goes through a
small MLP to ``m`` soft-prompt vectors in the LLM's input space, and the LLM is trained with the
LM loss to continue them with the text. The LLM stays frozen, or is adapted with LoRA (``peft``).

Checkpoints are ``inverter.safetensors`` (MLP and LoRA weights), ``optimizer.safetensors`` and
``inverter.json`` (config, step, losses, seconds per step, the embedder's and the LLM's
fingerprints, the sha256 of both weight files), written atomically, the JSON last. Training
resumes from the last checkpoint and reaches the same weights as an uninterrupted run (the data
order is a function of the seed and the step; nothing else draws random numbers).

Training runs on the LLM's device, in fp32 or under bf16 autocast (``precision="bf16"``; the
trained weights and the optimizer stay fp32), ``batch_size`` texts per micro-batch and
``grad_accum`` micro-batches per optimizer step. With ``held_out`` texts, every ``eval_every``
steps the model decodes them greedily and BLEU, token F1 and cosine go to ``eval.jsonl`` in the
checkpoint folder with the mean loss and seconds per step since the previous record.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Self, overload

import numpy as np
import torch
from torch import nn

from .._version import __version__
from ..artifacts import atomic_write, file_info, load_tensors, read_json, save_tensors, write_json
from ..errors import (
    ArtifactCorruptError,
    ArtifactNotFoundError,
    EmptyDatasetError,
    WorkbenchError,
    arg,
)
from ..settings import seeded
from .embedders import Embedder, check_embeddings, cosine_to
from .guided import InversionResult

CONFIG_FILE = "inverter.json"
WEIGHTS_FILE = "inverter.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
EMBEDDINGS_FILE = "train_embeddings.npy"
EVAL_FILE = "eval.jsonl"
EVAL_BATCH = 32  # held-out texts decoded together
PRECISIONS = ("fp32", "bf16")


class CheckpointMismatchError(WorkbenchError, ValueError):
    """A checkpoint trained for another embedder or LLM, or a folder of another training run."""


class CheckpointCorruptError(ArtifactCorruptError):
    """A checkpoint file whose sha256 does not match its JSON."""


@dataclass(frozen=True)
class InverterConfig:
    """Hyperparameters of a soft-prefix inverter and its training.

    Attributes:
        prefix_length: soft-prompt vectors ``m``.
        hidden: width of the MLP's hidden layer.
        lora_rank: 0 keeps the LLM frozen; r > 0 adds LoRA adapters of rank r to the attention
            projections.
        lora_alpha: LoRA scaling.
        lr: AdamW learning rate.
        batch_size: texts per micro-batch.
        max_tokens: texts are truncated to this many tokens in training.
        seed: initialisation and data order.
        grad_accum: micro-batches per optimizer step (``batch_size * grad_accum`` texts a step).
        precision: ``fp32``, or ``bf16`` (``torch.autocast`` on the model's device type: CUDA
            or CPU).
    """

    prefix_length: int = 8
    hidden: int = 1024
    lora_rank: int = 0
    lora_alpha: int = 16
    lr: float = 1e-3
    batch_size: int = 16
    max_tokens: int = 48
    seed: int = 0
    grad_accum: int = 1
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise WorkbenchError(
                f"unknown precision {self.precision!r}: use "
                + arg("precision='fp32' or 'bf16'", "--precision fp32 or bf16")
            )
        for name in ("batch_size", "grad_accum", "prefix_length", "max_tokens"):
            if getattr(self, name) < 1:
                raise WorkbenchError(
                    f"{name} is {getattr(self, name)}: pass "
                    + arg(f"{name}=1 or more", f"--{name.replace('_', '-')} 1 or more")
                )


class PrefixMLP(nn.Module):
    """``[batch, dim]`` embedding -> ``[batch, m, d_model]`` soft prompt (input unit-normalised)."""

    def __init__(self, dim: int, d_model: int, m: int, hidden: int, scale: float) -> None:
        super().__init__()
        self.m, self.d_model = m, d_model
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, m * d_model))
        self.out_norm = nn.LayerNorm(d_model)
        with torch.no_grad():  # start at the typical norm of a token embedding
            self.out_norm.weight.fill_(scale / d_model**0.5)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        """Map ``e`` ``[batch, d_embed]`` to soft prefixes ``[batch, m, d_model]``."""
        e = nn.functional.normalize(e, dim=-1)
        return self.out_norm(self.net(e).view(len(e), self.m, self.d_model))


def _lora_targets(lm: Any) -> list[str]:
    names = {
        n.rsplit(".", 1)[-1]
        for n, m in lm.blocks[0].named_modules()
        if isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"
    }
    for pair in (["q_proj", "v_proj"], ["c_attn"], ["query", "value"]):
        if set(pair) <= names:
            return pair
    raise WorkbenchError(
        f"{lm.name}: no attention projection found for LoRA among {sorted(names)}"
        "; train with lora_rank=0 (frozen LLM)"
    )


class SoftPromptModel:
    """What the trained inverter and the trained corrector share: an MLP from a feature vector to
    a soft prompt for ``lm`` (frozen, or LoRA-adapted), trained with the LM loss on texts,
    checkpointed, resumed and refused for another embedder or LLM. Subclasses set ``KIND`` and
    what the MLP reads (``_input_dim``, ``_batch_loss``).

    Args:
        lm: a decoder ``LoadedModel`` (its weights are never changed; LoRA adapts a copy).
        embedder: the embedder whose vectors are inverted (fixes ``dim``).
        config: an :class:`InverterConfig`.
    """

    #: ``kind`` recorded in the checkpoint JSON (a folder of another kind is refused on load).
    KIND = "soft-prompt-model"

    def __init__(self, lm: Any, embedder: Embedder, config: InverterConfig | None = None) -> None:
        if lm.kind != "decoder":
            raise WorkbenchError(
                f"{lm.name} is an encoder: the inverter needs a decoder LLM "
                "(e.g. smollm2-135m) to write text"
            )
        self.lm, self.embedder = lm, embedder
        self.config = config or InverterConfig()
        self.device = lm.device
        emb = lm.model.get_input_embeddings().weight
        scale = float(emb.detach().float().norm(dim=1).mean())
        with seeded(self.config.seed):  # the prefix MLP's and LoRA's initial weights
            self.prefix = PrefixMLP(
                self._input_dim(), lm.d_model, self.config.prefix_length, self.config.hidden, scale
            ).to(self.device)
            self.model = lm.model
            if self.config.lora_rank > 0:
                from peft import LoraConfig, get_peft_model

                base = copy.deepcopy(lm.model)
                self.model = get_peft_model(
                    base,
                    LoraConfig(
                        r=self.config.lora_rank,
                        lora_alpha=self.config.lora_alpha,
                        lora_dropout=0.0,
                        target_modules=_lora_targets(lm),
                    ),
                )
        for p in self.model.parameters():
            p.requires_grad_(False)
        for n, p in self.model.named_parameters():
            if "lora_" in n:
                p.requires_grad_(True)
        self.step_ = 0
        self.losses_: list[float] = []
        self.seconds_: list[float] = []  # wall seconds of each step

    def _input_dim(self) -> int:
        """Width of what the prefix MLP reads: the embedding."""
        return self.embedder.dim

    # -- parameters and checkpoints ------------------------------------------------------------

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Every trained tensor: ``prefix.*`` and ``lora.*``."""
        state = {
            f"prefix.{k}": v.detach().cpu().contiguous()
            for k, v in self.prefix.state_dict().items()
        }
        if self.config.lora_rank > 0:
            from peft import get_peft_model_state_dict

            for k, v in get_peft_model_state_dict(self.model).items():
                state[f"lora.{k}"] = v.detach().cpu().contiguous()
        return state

    def _load_trainable(self, state: dict[str, torch.Tensor]) -> None:
        self.prefix.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("prefix.")})
        lora = {k[5:]: v for k, v in state.items() if k.startswith("lora.")}
        if self.config.lora_rank > 0:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.model, lora)

    def parameters(self) -> list[nn.Parameter]:
        """The trainable parameters: the prefix map and any LoRA weights."""
        return list(self.prefix.parameters()) + [
            p for p in self.model.parameters() if p.requires_grad
        ]

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must match to be loaded for this LLM and embedder."""
        return {
            "embedder": self.embedder.name,
            "embedder_fingerprint": self.embedder.fingerprint,
            "embedder_dim": self.embedder.dim,
            "model": self.lm.name,
            "model_fingerprint": self.lm.weights_fingerprint,
        }

    def save(
        self,
        out: str | Path,
        optimizer: torch.optim.Optimizer | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Path:
        """Write the checkpoint atomically (weight files first, the JSON commit marker last)."""
        out = Path(out)
        files = {WEIGHTS_FILE: save_tensors(out / WEIGHTS_FILE, self.trainable_state())}
        groups = None
        if optimizer is not None:
            sd = optimizer.state_dict()
            tensors = {
                f"{i}.{k}": v.detach().cpu().contiguous()
                for i, st in sd["state"].items()
                for k, v in st.items()
            }
            files[OPTIMIZER_FILE] = save_tensors(out / OPTIMIZER_FILE, tensors)
            groups = sd["param_groups"]
        write_json(
            out / CONFIG_FILE,
            {
                "kind": self.KIND,
                "workbench_version": __version__,
                **self.identity(),
                "config": asdict(self.config),
                "step": self.step_,
                "losses": self.losses_,
                "step_seconds": self.seconds_,
                "files": files,
                "optimizer_param_groups": groups,
                **(extra or {}),
            },
        )
        return out

    @classmethod
    def load(cls, path: str | Path, lm: Any, embedder: Embedder) -> Self:
        """A trained inverter from ``path``, refused if trained for another embedder or LLM.

        Raises:
            CheckpointMismatchError: the recorded embedder or LLM fingerprint differs (both
                hashes are in the message).
            ArtifactNotFoundError: no ``inverter.json`` in ``path`` (a ``FileNotFoundError``).
            CheckpointCorruptError: a damaged ``inverter.json`` or weight file.
        """
        meta = read_checkpoint(path)
        if meta.get("kind", cls.KIND) != cls.KIND:
            raise CheckpointMismatchError(
                f"{path} holds a {meta.get('kind')}, not a {cls.KIND}: load it with the class "
                "that trained it (SoftPrefixInverter for `workbench invert train`, "
                "TrainedCorrector for `workbench invert train --kind corrector`)"
            )
        inv = cls(lm, embedder, InverterConfig(**meta["config"]))
        _check_identity(meta, inv.identity(), Path(path))
        inv._load_trainable(_read_tensors(Path(path), WEIGHTS_FILE, meta))
        inv.step_, inv.losses_ = int(meta["step"]), list(meta["losses"])
        inv.seconds_ = list(meta.get("step_seconds", []))
        return inv

    # -- training ------------------------------------------------------------------------------

    def _context_ids(self, context: str) -> list[int]:
        """Token ids of a context written between the soft prompt and the text."""
        return self.lm.tokenizer(context, add_special_tokens=False)["input_ids"]

    def _encode_texts(
        self,
        texts: Sequence[str],
        contexts: Sequence[str] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token ids ``[b, t]`` (context + text + eos, right-padded), attention mask ``[b, t]``
        and labels ``[b, t]`` (the text's ids and eos; -100 on the context and padding)."""
        tok = self.lm.tokenizer
        eos = tok.eos_token_id
        seqs, targets = [], []
        for i, t in enumerate(texts):
            ctx = [] if contexts is None else self._context_ids(contexts[i])
            text = tok(t, add_special_tokens=False)["input_ids"][: self.config.max_tokens] + (
                [eos] if eos is not None else []
            )
            seqs.append(ctx + text)
            targets.append([-100] * len(ctx) + text)
        width = max(len(s) for s in seqs)
        ids = torch.zeros(len(seqs), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for i, (s, y) in enumerate(zip(seqs, targets, strict=True)):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
            labels[i, : len(y)] = torch.tensor(y)
        return ids.to(self.device), mask.to(self.device), labels.to(self.device)

    def _head(self, prefix: torch.Tensor) -> torch.Tensor:
        """Soft prompt ``[b, m, d]`` followed by the BOS embedding when there is one."""
        bos = self.lm.tokenizer.bos_token_id
        if bos is None:
            return prefix
        emb = self.model.get_input_embeddings()(
            torch.full((len(prefix), 1), bos, device=self.device)
        )
        return torch.cat([prefix, emb.to(prefix.dtype)], dim=1)

    def loss(
        self, vectors: torch.Tensor, texts: Sequence[str], contexts: Sequence[str] | None = None
    ) -> torch.Tensor:
        """Mean token cross-entropy of ``texts`` after the soft prompts of ``vectors``
        ``[b, in_dim]`` (and after ``contexts``, whose tokens are not scored, when given)."""
        ids, mask, labels = self._encode_texts(texts, contexts)
        head = self._head(self.prefix(vectors.to(self.device)).to(self.lm.dtype))
        tok_emb = self.model.get_input_embeddings()(ids)
        inputs = torch.cat([head, tok_emb], dim=1)
        att = torch.cat(
            [torch.ones(len(ids), head.shape[1], dtype=mask.dtype, device=self.device), mask], dim=1
        )
        logits = self.model(inputs_embeds=inputs, attention_mask=att).logits
        logits = logits[:, head.shape[1] - 1 : -1].float()  # the positions that predict the text
        return nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100
        )

    def _batch_indices(self, step: int, n: int) -> np.ndarray:
        """Rows of optimizer step ``step``: ``batch_size * grad_accum`` of a seeded permutation
        per epoch (a function of the seed, the step and ``n`` only)."""
        bs = self.config.batch_size * self.config.grad_accum
        flat = np.arange(step * bs, (step + 1) * bs)
        epochs, pos = flat // n, flat % n
        perms = {
            e: np.random.default_rng([self.config.seed, int(e)]).permutation(n)
            for e in np.unique(epochs)
        }
        return np.array([perms[e][p] for e, p in zip(epochs, pos, strict=True)])

    def fit(
        self,
        texts: Sequence[str],
        out: str | Path,
        steps: int,
        *,
        checkpoint_every: int = 50,
        resume: bool = True,
        max_seconds: float | None = None,
        progress: bool = True,
        stop_after: int | None = None,
        held_out: Sequence[str] | None = None,
        eval_every: int = 0,
        eval_max_tokens: int = 40,
    ) -> Self:
        """Train for ``steps`` optimizer steps in total, checkpointing into ``out``.

        Args:
            texts: training corpus (empty strings are refused).
            out: checkpoint folder; if it holds a checkpoint of the same run, training resumes
                from it (``resume=False`` refuses instead).
            steps: total steps (a resumed run does only the missing ones).
            checkpoint_every: steps between checkpoints (and a final one).
            resume: continue from a checkpoint of the same run in ``out`` (False: refuse one).
            max_seconds: stop (after checkpointing) when this much wall time has passed.
            stop_after: stop after this many steps of this call (simulates an interruption).
            progress: show a progress bar (steps/s, ETA and the loss).
            held_out: texts not trained on, decoded greedily for ``eval.jsonl``.
            eval_every: steps between evaluations of ``held_out`` (also at step 0 and at the
                last step; 0: none).
            eval_max_tokens: tokens decoded per held-out text.

        Raises:
            EmptyDatasetError: no texts, or empty texts (their rows are listed).
            CheckpointMismatchError: ``out`` holds a checkpoint of another run.
        """
        from tqdm.auto import tqdm

        texts = _check_texts(texts, "training")
        held = _check_texts(held_out, "held-out") if held_out and eval_every > 0 else []
        self._warn_truncation(texts)
        out = Path(out)
        corpus = self._corpus_fingerprint(texts)
        run: dict[str, Any] = {"corpus_fingerprint": corpus, "n_texts": len(texts)}
        if held:
            run["held_out_fingerprint"] = self._corpus_fingerprint(held)
        opt = torch.optim.AdamW(self.parameters(), lr=self.config.lr, weight_decay=0.0)
        if (out / CONFIG_FILE).exists():
            self._resume(out, opt, run, resume)
        vectors = self._train_vectors(texts, out, corpus)
        log = EvalLog(out / EVAL_FILE, keep_until=self.step_)
        held_vectors = check_embeddings(self.embedder.embed(held), self.embedder) if held else None
        start, done = time.time(), 0

        def evaluate() -> None:
            assert held_vectors is not None
            self.prefix.eval()
            t0 = time.time()
            metrics = self.evaluate_held_out(held, held_vectors, max_new_tokens=eval_max_tokens)
            since = slice(log.last_step(), None)
            log.append(
                {
                    "step": self.step_,
                    "train_loss": _mean(self.losses_[since]),
                    "seconds_per_step": _mean(self.seconds_[since]),
                    "eval_seconds": round(time.time() - t0, 3),
                    "n_held_out": len(held),
                    **{k: round(v, 6) for k, v in metrics.items()},
                }
            )
            self.prefix.train()

        micro = self.config.grad_accum
        bar = tqdm(
            total=steps,
            initial=self.step_,
            disable=not progress,
            desc=f"train {self.KIND}",
            unit="step",
        )
        self.prefix.train()
        try:
            if held and self.step_ == 0 and steps > 0:
                evaluate()
            while self.step_ < steps:
                t0 = time.time()
                idx = self._batch_indices(self.step_, len(texts))
                opt.zero_grad(set_to_none=True)
                value = 0.0
                for j, rows in enumerate(np.array_split(idx, micro)):
                    with self.autocast():
                        loss = self._batch_loss(self.step_ * micro + j, rows, texts, vectors)
                    (loss / micro).backward()
                    value += float(loss.detach()) / micro
                opt.step()
                self.step_ += 1
                done += 1
                self.losses_.append(round(value, 6))
                self.seconds_.append(round(time.time() - t0, 4))
                bar.update(1)
                bar.set_postfix(loss=f"{value:.3f}")
                timeout = max_seconds is not None and time.time() - start > max_seconds
                stop = stop_after is not None and done >= stop_after
                if held and (self.step_ % eval_every == 0 or self.step_ == steps):
                    evaluate()
                if self.step_ % checkpoint_every == 0 or self.step_ == steps or timeout or stop:
                    self.save(out, opt, run)
                if timeout or stop:
                    break
        finally:
            bar.close()
            self.prefix.eval()
        return self

    def autocast(self) -> Any:
        """``torch.autocast`` to bf16 on the model's device type under ``precision="bf16"``;
        a no-op context under fp32."""
        return torch.autocast(
            device_type=torch.device(self.device).type,
            dtype=torch.bfloat16,
            enabled=self.config.precision == "bf16",
        )

    def _resume(
        self, out: Path, opt: torch.optim.Optimizer, run: dict[str, Any], resume: bool
    ) -> None:
        """Load the weights, optimizer state, step, losses and times of the run in ``out``;
        refuse another run's checkpoint."""
        meta = read_checkpoint(out)
        _check_identity(meta, self.identity(), out)
        theirs_config = {**asdict(InverterConfig()), **meta["config"]}
        same = all(meta.get(k) == v for k, v in run.items() if k != "n_texts")
        if not resume or not same or theirs_config != asdict(self.config):
            theirs = str(meta.get("corpus_fingerprint", "?"))[:12]
            raise CheckpointMismatchError(
                f"{out} holds another training run (its corpus {theirs} / config "
                f"{theirs_config} vs this corpus {run['corpus_fingerprint'][:12]} / config "
                f"{asdict(self.config)}); pass {arg('another out', 'another --out')} or "
                "delete it"
            )
        self._load_trainable(_read_tensors(out, WEIGHTS_FILE, meta))
        self.step_, self.losses_ = int(meta["step"]), list(meta["losses"])
        self.seconds_ = list(meta.get("step_seconds", [0.0] * self.step_))
        if OPTIMIZER_FILE in meta["files"]:
            state = _read_tensors(out, OPTIMIZER_FILE, meta)
            sd: dict[str, Any] = {"state": {}, "param_groups": meta["optimizer_param_groups"]}
            for key, v in state.items():
                i, name = key.split(".", 1)
                sd["state"].setdefault(int(i), {})[name] = (
                    v.to(self.device) if name != "step" else v
                )
            opt.load_state_dict(sd)

    def evaluate_held_out(
        self, texts: list[str], vectors: np.ndarray, *, max_new_tokens: int = 40
    ) -> dict[str, float]:
        """BLEU, token F1, exact match and cosine of this model's greedy texts for ``texts``
        (``vectors`` ``[n, dim]``: their embeddings), under the training precision."""
        from .metrics import evaluate

        with torch.inference_mode(), self.autocast():
            hyps = self._eval_hypotheses(texts, vectors, max_new_tokens)
        res = evaluate(texts, hyps, self.embedder, targets=vectors)
        res.pop("cosine_bow_anchor", None)
        return res

    def _eval_hypotheses(
        self, texts: list[str], vectors: np.ndarray, max_new_tokens: int
    ) -> list[str]:
        """One greedy text per held-out row (the subclass decides from what)."""
        raise NotImplementedError

    def _warn_truncation(self, texts: list[str]) -> None:
        """Warn once, with the token counts, when training texts are longer than
        ``config.max_tokens`` (training sees only their first ``max_tokens`` tokens)."""
        limit = self.config.max_tokens
        ids = self.lm.tokenizer(texts, add_special_tokens=False)["input_ids"]
        long = [len(t) for t in ids if len(t) > limit]
        if long:
            how = arg("InverterConfig(max_tokens=...)", "--max-tokens")
            warnings.warn(
                f"{len(long)} of {len(texts)} training texts are longer than max_tokens={limit} "
                f"tokens (the longest has {max(long)}): the inverter is trained on their first "
                f"{limit} tokens only; raise {how} or split the long texts",
                stacklevel=3,
            )

    def _corpus_fingerprint(self, texts: list[str]) -> str:
        """What identifies the training data of a run (a resumed run must see the same)."""
        return hashlib.sha256("\x00".join(texts).encode()).hexdigest()

    def _batch_loss(
        self, step: int, idx: np.ndarray, texts: list[str], vectors: np.ndarray
    ) -> torch.Tensor:
        """The loss of micro-batch ``step`` (``optimizer step * grad_accum + j``) on rows
        ``idx`` (a function of both only)."""
        return self.loss(torch.from_numpy(vectors[idx]), [texts[i] for i in idx])

    def _train_vectors(self, texts: list[str], out: Path, corpus: str) -> np.ndarray:
        """Embeddings of the corpus, cached in ``out`` (keyed by corpus and embedder)."""
        path, key = out / EMBEDDINGS_FILE, out / (EMBEDDINGS_FILE + ".json")
        ident = {"corpus": corpus, "embedder": self.embedder.fingerprint}
        if path.exists() and key.exists():
            try:
                cached = read_json(key, "embedding cache key")
            except ArtifactCorruptError:
                cached = {}
            if (
                {k: cached.get(k) for k in ident} == ident
                and cached.get("file") is not None
                and (file_info(path) == cached["file"])
            ):
                return np.load(path, allow_pickle=False)
        vec = check_embeddings(self.embedder.embed(texts), self.embedder)
        atomic_write(path, lambda f: np.save(f, vec, allow_pickle=False))
        write_json(key, {**ident, "file": file_info(path)})  # a damaged cache is recomputed
        return vec

    # -- inference -----------------------------------------------------------------------------

    def _generate(
        self,
        head: torch.Tensor,
        *,
        num_beams: int,
        num_return: int,
        max_new_tokens: int,
        mask: torch.Tensor | None = None,
    ) -> list[str]:
        """Decode after the input embeddings ``head`` ``[b, p, d_model]`` (``mask`` ``[b, p]``:
        0 on left padding): ``b * num_return`` texts, each cut at its first newline (training
        texts are single lines ending in eos)."""
        tok = self.lm.tokenizer
        att = torch.ones(head.shape[:2], dtype=torch.long, device=self.device)
        if mask is not None:
            att = mask.to(self.device)
        gen = self.model.generate(
            inputs_embeds=head,
            attention_mask=att,
            max_new_tokens=max_new_tokens,
            num_beams=max(num_beams, num_return),
            num_return_sequences=num_return,
            do_sample=False,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        )
        return [
            t.strip().split("\n")[0].strip()
            for t in tok.batch_decode(gen, skip_special_tokens=True)
        ]


class SoftPrefixInverter(SoftPromptModel):
    """Embedding -> text through a soft prompt for ``lm`` (GEIA / vec2text's hypothesis model).

    Examples:
        >>> inv = SoftPrefixInverter(lm, embedder, InverterConfig(prefix_length=4))  # doctest: +SKIP
        >>> inv.fit(texts, out="runs/inverter", steps=200)  # doctest: +SKIP
        >>> inv.invert(embedder.embed(["A man plays a guitar."]))  # doctest: +SKIP
        ['A man is playing a guitar.']
    """

    KIND = "soft-prefix-inverter"

    @torch.inference_mode()
    @overload
    def invert(
        self,
        vectors: Any,
        *,
        num_beams: int = 1,
        num_return: Literal[1] = 1,
        max_new_tokens: int = 40,
    ) -> list[str]: ...

    @overload
    def invert(
        self, vectors: Any, *, num_beams: int = 1, num_return: int, max_new_tokens: int = 40
    ) -> list[list[str]] | list[str]: ...

    def invert(
        self, vectors: Any, *, num_beams: int = 1, num_return: int = 1, max_new_tokens: int = 40
    ) -> list[list[str]] | list[str]:
        """Texts for ``vectors`` ``[n, dim]`` (or ``[dim]``): a list of ``n`` strings, or of ``n``
        lists of ``num_return`` strings (best first) when ``num_return > 1``.

        Raises:
            EmbeddingInputError: a dimension other than the embedder's, NaN or zero vectors.
        """
        x = torch.from_numpy(check_embeddings(vectors, self.embedder)).to(self.device)
        texts = self._generate(
            self._head(self.prefix(x).to(self.lm.dtype)),
            num_beams=num_beams,
            num_return=num_return,
            max_new_tokens=max_new_tokens,
        )
        if num_return == 1:
            return texts
        return [texts[i * num_return : (i + 1) * num_return] for i in range(len(x))]

    def _eval_hypotheses(
        self, texts: list[str], vectors: np.ndarray, max_new_tokens: int
    ) -> list[str]:
        out: list[str] = []
        for a in range(0, len(vectors), EVAL_BATCH):
            out += self.invert(vectors[a : a + EVAL_BATCH], max_new_tokens=max_new_tokens)
        return out

    def reconstruct(self, target: Any, *, max_new_tokens: int = 40) -> InversionResult:
        """One embedding ``target`` ``[dim]`` as an ``InversionResult`` (greedy text, its cosine
        to the target, wall time), like ``GuidedInverter.invert``; an empty decode reads ".".
        """
        t0 = time.time()
        tgt = check_embeddings(target, self.embedder)
        text = self.invert(tgt, max_new_tokens=max_new_tokens)[0] or "."
        cos = float(cosine_to(self.embedder.embed([text]), tgt[0])[0])
        return InversionResult(text, cos, [(0, text, cos)], time.time() - t0)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The JSON of a checkpoint folder."""
    p = Path(path) / CONFIG_FILE
    if not p.exists():
        raise ArtifactNotFoundError(
            f"{p} does not exist: pass a folder written by "
            "`workbench invert train` (it holds inverter.json)"
        )
    try:
        return dict(read_json(p, "checkpoint", _CORRUPT_FIX))
    except ArtifactCorruptError as exc:
        raise CheckpointCorruptError(str(exc)) from None


_CORRUPT_FIX = "the checkpoint is damaged; delete the folder and retrain"


def _check_identity(meta: dict[str, Any], now: dict[str, Any], path: Path) -> None:
    diffs = [
        f"{k}: checkpoint {meta.get(k)} vs now {now[k]}"
        for k in ("embedder_fingerprint", "model_fingerprint")
        if meta.get(k) != now[k]
    ]
    if diffs:
        raise CheckpointMismatchError(
            f"{path} was trained for embedder {meta.get('embedder')} and model "
            f"{meta.get('model')}, not {now['embedder']} / {now['model']} ("
            + "; ".join(diffs)
            + "): load it with the embedder and LLM it was trained for, or "
            "train a new inverter"
        )


def _read_tensors(path: Path, name: str, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    try:
        return load_tensors(
            path / name,
            meta["files"].get(name),
            fix=_CORRUPT_FIX,
            framework="pt",
            what="checkpoint",
        )
    except ArtifactCorruptError as exc:
        raise CheckpointCorruptError(str(exc)) from None


def _check_texts(texts: Sequence[str] | None, what: str) -> list[str]:
    """``texts`` as a list; none, or an empty one, is refused (the rows are listed)."""
    texts = list(texts or [])
    if not texts:
        raise EmptyDatasetError(f"no {what} texts: pass a list of sentences")
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise EmptyDatasetError(f"{what} texts at rows {empty[:10]} are empty: drop them")
    return texts


def _mean(values: Sequence[float]) -> float | None:
    return round(float(np.mean(values)), 6) if len(values) else None


class EvalLog:
    """``eval.jsonl`` of a checkpoint folder: one JSON record per evaluation, the whole file
    rewritten atomically on each append. Opened for a run resumed at step ``keep_until``, it
    drops the records of later steps (evaluated after the last checkpoint, so redone); for a
    fresh run (``keep_until`` 0), all of them."""

    def __init__(self, path: Path, keep_until: int) -> None:
        self.path = path
        old = read_eval_log(path) if keep_until > 0 else []
        self.records = [r for r in old if r["step"] <= keep_until]
        if path.exists():
            self._write()

    def last_step(self) -> int:
        """The step of the last record (0 when none)."""
        return int(self.records[-1]["step"]) if self.records else 0

    def append(self, record: dict[str, Any]) -> None:
        """Add ``record`` and rewrite the file."""
        self.records.append(record)
        self._write()

    def _write(self) -> None:
        text = "".join(json.dumps(r) + "\n" for r in self.records)
        atomic_write(self.path, lambda f: f.write(text), mode="w")


def read_eval_log(path: str | Path) -> list[dict[str, Any]]:
    """The records of an ``eval.jsonl`` (a file, or a checkpoint folder; ``[]`` when none)."""
    p = Path(path)
    if p.is_dir():
        p = p / EVAL_FILE
    if not p.exists():
        return []
    records = []
    for line in p.read_text().splitlines():
        try:
            records.append(dict(json.loads(line)))
        except (json.JSONDecodeError, TypeError, ValueError):
            warnings.warn(
                f"{p} is damaged after record {len(records)}: the records after it are dropped "
                "(a resumed run writes them again from its checkpoint on)",
                stacklevel=2,
            )
            break
    return records
