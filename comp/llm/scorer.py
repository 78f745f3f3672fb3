"""Log-probabilities of candidate answers under a transformers causal LM, without generating.

:meth:`CausalLMScorer.score_ids` returns, for every row and candidate, the summed log-probability
of the candidate's target tokens given the shared head, the row and the candidate's context:
``log P(target | head, row, context)``, shape (n_rows, n_candidates). Turning those into class
probabilities is :mod:`comp.llm.schemes`'.

Three ways to compute the same numbers (``method``):

- ``naive``: every (row, candidate) sequence in full, no cache: the reference.
- ``expand``: the row is run once (batched, left-padded) on top of the head's KV cache, then its
  cache is copied across the candidates, which run as one batch of continuations. Uses only the
  model's own 2-D padding masks, so it works with every attention implementation.
- ``tree``: the candidates are merged into a token trie (shared first tokens, a yes/no question's
  shared words are computed once) and placed after the row in the same forward pass; a 4-D mask
  lets each trie node see the head, the row and its own ancestors, and position ids restart
  after the row for every branch. One forward per batch; needs eager or SDPA attention.

With ``reuse_prefix`` the head (instruction + few-shot examples) is encoded once per prompt and
its KV cache expanded over each batch, instead of being recomputed for every row. Rows are
batched longest first. :class:`ScoreStats` counts tokens/s.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from comp.errors import ConfigError
from comp.llm.cache import build_trie, cache_keyword, cache_layers, sliding_window

METHODS = ("tree", "expand", "naive")


@dataclass
class ScoreStats:
    """Counters over every call. ``prompt_tokens``: per row, the head, the row and each
    candidate's tokens once (what the scores are conditioned on; the same for every method);
    ``computed_tokens``: the tokens actually run through the model."""

    rows: int = 0
    prompt_tokens: int = 0
    computed_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.prompt_tokens / self.seconds if self.seconds else 0.0

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


class CausalLMScorer:
    """Score candidate continuations with ``model`` (a loaded ``*ForCausalLM``, in eval mode,
    on its device and dtype; peft-wrapped models work too).

    ``batch_size``: rows per forward pass; ``max_sequences``: cap on rows x candidates in one
    continuation batch of ``expand`` (its KV copies grow with it).
    """

    def __init__(
        self,
        model,
        *,
        batch_size: int = 16,
        method: str = "tree",
        reuse_prefix: bool = True,
        max_sequences: int = 256,
    ):
        if method not in METHODS:
            raise ConfigError(f"scoring method '{method}' is not one of {', '.join(METHODS)}")
        if batch_size < 1 or max_sequences < 1:
            raise ConfigError("scoring batch_size and max_sequences must be at least 1")
        self.model = model
        self.batch_size = batch_size
        self.method = method
        self.reuse_prefix = reuse_prefix
        self.max_sequences = max_sequences
        self.stats = ScoreStats()
        self._prefix: tuple[tuple[int, ...], list] | None = None
        self._cache_kw = cache_keyword(model)
        if method == "tree":
            impl = getattr(model.config, "_attn_implementation", None) or "eager"
            if impl not in ("eager", "sdpa"):
                raise ConfigError(
                    f"scoring method tree needs eager or sdpa attention (a custom 4-D mask), the model uses "
                    f"{impl}; use method: expand, or load the model with attn_implementation='sdpa'"
                )

    # ---- helpers ---------------------------------------------------------------------------------
    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def dtype(self):
        return self.model.get_input_embeddings().weight.dtype

    def _forward(self, **kwargs):
        return self.model(**kwargs, return_dict=True)

    def _prefix_cache(self, head: list[int]):
        """The head's per-layer (keys, values), batch 1, computed once per distinct head."""
        import torch

        key = tuple(head)
        if self._prefix is None or self._prefix[0] != key:
            ids = torch.tensor([head], device=self.device)
            out = self._forward(input_ids=ids, use_cache=True, logits_to_keep=1)
            self.stats.computed_tokens += len(head)
            layers = cache_layers(out)
            self._prefix = (key, layers)
        return self._prefix[1]

    def _cache(self, layers, batch: int, repeat: int = 1):
        """A fresh DynamicCache holding ``layers`` for ``batch`` rows (each repeated ``repeat`` times)."""
        from transformers import DynamicCache

        def grow(t):
            if repeat > 1:
                return t.repeat_interleave(repeat, dim=0)
            return t.expand(batch, *t.shape[1:]) if t.shape[0] == 1 and batch > 1 else t

        return DynamicCache(ddp_cache_data=[(grow(k), grow(v)) for k, v in layers], config=self.model.config)

    @staticmethod
    def _gather(logits, tokens):
        """``log_softmax(logits)`` at ``tokens``: logits (B, K, V), tokens (B, K) -> float64 (B, K)."""
        import torch

        logits = logits.float()
        picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        return (picked - torch.logsumexp(logits, dim=-1)).double().cpu().numpy()

    # ---- public ------------------------------------------------------------------------------------
    def score_ids(
        self,
        head: Sequence[int],
        rows: Sequence[Sequence[int]],
        candidates: Sequence[tuple[Sequence[int], Sequence[int]]],
    ) -> np.ndarray:
        """``log P(target_j | head, row_i, context_j)`` for every row i and candidate j:
        float64 array of shape (n_rows, n_candidates)."""
        import torch

        head = [int(t) for t in head]
        rows = [[int(t) for t in r] for r in rows]
        cands = [([int(t) for t in c], [int(t) for t in t_]) for c, t_ in candidates]
        if not cands or any(not t for _, t in cands):
            raise ValueError("every candidate needs at least one target token")
        out = np.zeros((len(rows), len(cands)))
        if not rows:
            return out
        if not self.reuse_prefix or self.method == "naive":
            rows, head = [head + r for r in rows], []
        elif min(len(r) for r in rows) == 0:  # a row must hold the token the first answer token follows
            rows, head = [head[-1:] + r for r in rows], head[:-1]
        self._check_window(len(head) + max(len(r) for r in rows) + sum(len(c) + len(t) for c, t in cands))
        started = time.perf_counter()
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                prefix = self._prefix_cache(head) if head else None
                order = np.argsort([-len(r) for r in rows], kind="stable")
                step = self.batch_size if self.method != "naive" else max(1, self.batch_size // len(cands))
                for start in range(0, len(order), step):
                    batch = order[start : start + step]
                    run = {"tree": self._tree, "expand": self._expand, "naive": self._naive}[self.method]
                    out[batch] = run(len(head), prefix, [rows[i] for i in batch], cands)
        finally:
            self.model.train(was_training)
        self.stats.seconds += time.perf_counter() - started
        self.stats.rows += len(rows)
        cand_tokens = sum(len(c) + len(t) for c, t in cands)
        self.stats.prompt_tokens += sum(len(head) + len(r) + cand_tokens for r in rows)
        return out

    def _check_window(self, length: int) -> None:
        window = sliding_window(self.model.config)
        if window is not None and length > window:
            raise ConfigError(
                f"a scored sequence of {length} tokens exceeds the model's sliding attention window "
                f"({window}); shorten the prompt, use fewer examples or labels per question"
            )

    # ---- left-padded rows ------------------------------------------------------------------------------
    def _rows(self, n_head: int, rows: list[list[int]]):
        """Left-padded ids, 0/1 mask and position ids (B, W) of ``rows`` following ``n_head`` tokens."""
        import torch

        width = max(len(r) for r in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        pos = torch.full((len(rows), width), n_head, dtype=torch.long)
        for i, r in enumerate(rows):
            off = width - len(r)
            if r:
                ids[i, off:] = torch.tensor(r)
                mask[i, off:] = 1
                pos[i, off:] = n_head + torch.arange(len(r))
        return ids.to(self.device), mask.to(self.device), pos.to(self.device)

    # ---- tree -------------------------------------------------------------------------------------------------
    def _tree(self, n_head: int, prefix, rows: list[list[int]], cands) -> np.ndarray:
        import torch

        trie = build_trie([c + t for c, t in cands])
        n_nodes, batch = len(trie.tokens), len(rows)
        ids, row_mask, pos = self._rows(n_head, rows)
        width = ids.shape[1]
        lengths = row_mask.sum(1)
        node_tokens = torch.tensor(trie.tokens, device=self.device)
        ids = torch.cat([ids, node_tokens.expand(batch, n_nodes)], dim=1)
        depth = torch.tensor(trie.depth, device=self.device)
        pos = torch.cat([pos, n_head + lengths[:, None] + depth[None, :]], dim=1)
        # allowed[b, q, k]: query q (row cols, then nodes) may see key k (head, row cols, nodes)
        q_len = width + n_nodes
        allowed = torch.zeros((batch, q_len, n_head + q_len), dtype=torch.bool, device=self.device)
        allowed[:, :, :n_head] = True
        real = row_mask.bool()
        causal = torch.tril(torch.ones((width, width), dtype=torch.bool, device=self.device))
        allowed[:, :width, n_head : n_head + width] = causal[None] & real[:, None, :]
        eye = torch.eye(width, dtype=torch.bool, device=self.device)
        allowed[:, :width, n_head : n_head + width] |= eye[None] & ~real[:, :, None]  # a pad sees itself only
        ancestors = torch.eye(n_nodes, dtype=torch.bool)
        for node, parent in enumerate(trie.parent):
            if parent >= 0:
                ancestors[node] |= ancestors[parent]
        allowed[:, width:, n_head : n_head + width] = real[:, None, :]
        allowed[:, width:, n_head + width :] = ancestors.to(self.device)[None]
        neg = torch.finfo(self.dtype).min
        mask = torch.zeros(allowed.shape, dtype=self.dtype, device=self.device).masked_fill(~allowed, neg)

        # logits only where a target token is predicted: at its parent (the row's end, or a node)
        scored = [
            (j, node) for j, ((c, _), path) in enumerate(zip(cands, trie.paths, strict=True)) for node in path[len(c) :]
        ]
        parents = sorted({trie.parent[node] for _, node in scored})
        column = {p: (width - 1 if p < 0 else width + p) for p in parents}
        keep = torch.tensor([column[p] for p in parents], device=self.device)
        kwargs = {self._cache_kw: self._cache(prefix, batch)} if prefix is not None else {}
        out = self._forward(
            input_ids=ids,
            attention_mask=mask[:, None],
            position_ids=pos,
            logits_to_keep=keep,
            use_cache=prefix is not None,
            **kwargs,
        )
        self.stats.computed_tokens += int(lengths.sum()) + batch * n_nodes
        where = {p: i for i, p in enumerate(parents)}
        index = torch.tensor([where[trie.parent[node]] for _, node in scored], device=self.device)
        tokens = torch.tensor([trie.tokens[node] for _, node in scored], device=self.device)
        logp = self._gather(out.logits[:, index], tokens.expand(batch, -1))  # (B, n_scored)
        result = np.zeros((batch, len(cands)))
        for k, (j, _) in enumerate(scored):
            result[:, j] += logp[:, k]
        return result

    # ---- expand -------------------------------------------------------------------------------------------
    def _expand(self, n_head: int, prefix, rows: list[list[int]], cands) -> np.ndarray:
        import torch

        batch = len(rows)
        ids, row_mask, pos = self._rows(n_head, rows)
        ones = torch.ones((batch, n_head), dtype=torch.long, device=self.device)
        mask = torch.cat([ones, row_mask], dim=1)
        kwargs = {self._cache_kw: self._cache(prefix, batch)} if prefix is not None else {}
        out = self._forward(
            input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1, **kwargs
        )
        self.stats.computed_tokens += int(row_mask.sum())
        last = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (B, V): the first answer token's
        row_layers = cache_layers(out)
        lengths = row_mask.sum(1)
        result = np.zeros((batch, len(cands)))
        chunk = max(1, self.max_sequences // batch)
        for start in range(0, len(cands), chunk):
            part = cands[start : start + chunk]
            result[:, start : start + len(part)] = self._continue(n_head, row_layers, mask, lengths, last, part)
        return result

    def _continue(self, n_head, row_layers, mask, lengths, last, cands) -> np.ndarray:
        """Every candidate after every row: a batch of rows x candidates, the rows' caches repeated."""
        import torch

        batch, n = mask.shape[0], len(cands)
        result = np.zeros((batch, n))
        # target token k of a candidate sits at continuation index len(context) + k and is predicted
        # by the logits one column earlier; column -1 is the row's last token (``last``)
        cols, targets = [], []
        for j, (c, t) in enumerate(cands):
            pairs = [(len(c) + k - 1, tok) for k, tok in enumerate(t)]
            if pairs[0][0] < 0:
                result[:, j] += last[:, pairs[0][1]].double().cpu().numpy()
                pairs = pairs[1:]
            cols.append([col for col, _ in pairs])
            targets.append([tok for _, tok in pairs])
        n_keep = max(len(c) for c in cols)
        if n_keep == 0:  # single-token answers right after the row: no continuation to run
            return result
        seqs = [c + t for c, t in cands]
        width = max(len(s) for s in seqs)
        ids = torch.zeros((n, width), dtype=torch.long)
        cmask = torch.zeros((n, width), dtype=torch.long)
        for j, s in enumerate(seqs):
            ids[j, : len(s)] = torch.tensor(s)
            cmask[j, : len(s)] = 1
        valid = np.array([[1.0] * len(c) + [0.0] * (n_keep - len(c)) for c in cols])
        keep = torch.tensor([c + [0] * (n_keep - len(c)) for c in cols])
        want = torch.tensor([t + [0] * (n_keep - len(t)) for t in targets])
        ids, cmask = ids.to(self.device), cmask.to(self.device)
        out = self._forward(
            input_ids=ids.repeat(batch, 1),
            attention_mask=torch.cat([mask.repeat_interleave(n, 0), cmask.repeat(batch, 1)], dim=1),
            position_ids=n_head + lengths.repeat_interleave(n)[:, None] + torch.arange(width, device=self.device),
            use_cache=True,
            **{self._cache_kw: self._cache(row_layers, batch * n, repeat=n)},
            logits_to_keep=keep.to(self.device).repeat(batch, 1),
        )
        self.stats.computed_tokens += batch * int(cmask.sum())
        logp = self._gather(out.logits, want.to(self.device).repeat(batch, 1)).reshape(batch, n, n_keep)
        return result + (logp * valid[None]).sum(-1)

    # ---- naive ----------------------------------------------------------------------------------------------
    def _naive(self, n_head: int, prefix, rows: list[list[int]], cands) -> np.ndarray:
        """Each (row, candidate) in full, left-padded, no cache (``n_head`` is 0 here)."""
        import torch

        seqs = [(i, j, r + c + t, len(t)) for i, r in enumerate(rows) for j, (c, t) in enumerate(cands)]
        ids, mask, pos = self._rows(0, [s for _, _, s, _ in seqs])
        width = ids.shape[1]
        n_keep = max(n for *_, n in seqs)
        # with left padding every sequence ends at the last column: its k-th target token from the
        # end is predicted at column width-1-k-1
        cols = [[width - 1 - n + k for k in range(n)] + [width - 2] * (n_keep - n) for *_, n in seqs]
        targets = [s[len(s) - n :] + [0] * (n_keep - n) for _, _, s, n in seqs]
        out = self._forward(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            use_cache=False,
            logits_to_keep=torch.tensor(cols, device=self.device),
        )
        self.stats.computed_tokens += int(mask.sum())
        logp = self._gather(out.logits, torch.tensor(targets, device=self.device))
        result = np.zeros((len(rows), len(cands)))
        for k, (i, j, _, n) in enumerate(seqs):
            result[i, j] = logp[k, :n].sum()
        return result
