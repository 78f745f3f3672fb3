"""Classification heads on a backbone's hidden states: the pooling and multi-sample dropout tricks.

``pooling: auto`` keeps ``AutoModelForSequenceClassification`` and its architecture's own head (BERT's
pooler, RoBERTa's dense head, a decoder's last token). Any other pooling builds a
:class:`PooledClassifier`: ``AutoModel`` -> pooled vector -> dropout -> linear layer, with

- ``cls``: the first token; ``mean``: the mean of the real tokens; ``last``: the last real token
  (decoders, right-padded);
- ``concat4``: the first token of each of the last 4 layers, concatenated (4 x hidden wide);
- ``attention``: a learned softmax-weighted mean of the real tokens.

``multi_sample_dropout: K`` applies the head to K dropout masks of the pooled vector and averages
the logits while training (faster convergence, a common competition trick); inference is one pass.
"""

from __future__ import annotations

from pathlib import Path

import torch

from comp.errors import ConfigError

POOLINGS = ("auto", "cls", "mean", "last", "concat4", "attention")  # also in comp.models.transformer
HEAD_FILE = "comp_head.safetensors"


class AttentionPool(torch.nn.Module):
    """A learned softmax-weighted mean of the real tokens."""

    def __init__(self, width: int):
        super().__init__()
        self.attn_score = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.Tanh(), torch.nn.Linear(width, 1))

    def forward(self, hidden, mask):
        score = self.attn_score(hidden).squeeze(-1).float()
        score = score.masked_fill(mask == 0, torch.finfo(score.dtype).min)
        weights = score.softmax(-1).to(hidden.dtype)
        return (weights.unsqueeze(-1) * hidden).sum(1)


class PooledHead(torch.nn.Module):
    """The trained part on top of the backbone: optional attention pooling, dropout, linear layer."""

    def __init__(self, width: int, in_features: int, n_outputs: int, dropout: float, attention: bool):
        super().__init__()
        self.attention_pool = AttentionPool(width) if attention else None
        self.head_dropout = torch.nn.Dropout(dropout)
        self.head_out = torch.nn.Linear(in_features, n_outputs)


class PooledClassifier(torch.nn.Module):
    """``forward(input_ids, attention_mask) -> .logits`` of shape (batch, n_outputs).

    The head's modules live under ``head`` with names that no peft target of a backbone (query,
    dense, q_proj, ...) matches, so adapters wrap the backbone only and the head trains in full.
    """

    def __init__(self, backbone, pooling: str, n_outputs: int, dropout: float, samples: int = 1):
        super().__init__()
        if pooling not in POOLINGS[1:]:
            raise ValueError(f"pooling {pooling!r} is not one of {', '.join(POOLINGS[1:])}")
        self.backbone = backbone
        if getattr(backbone, "pooler", None) is not None:
            backbone.pooler = None  # BERT's own pooler is unused here (and unused weights upset DDP)
        self.config = backbone.config
        self.pooling, self.samples = pooling, samples
        text = self.config.get_text_config()
        width = text.hidden_size
        # concat4: the last 4 hidden states (fewer for a backbone with fewer layers, counting the embeddings)
        self.n_concat = min(4, int(getattr(text, "num_hidden_layers", 3)) + 1)
        self.head = PooledHead(
            width,
            width * (self.n_concat if pooling == "concat4" else 1),
            n_outputs,
            dropout,
            attention=pooling == "attention",
        )

    def activation_checkpointing_enable(self, **kwargs):
        self.backbone.activation_checkpointing_enable(**kwargs)

    def get_input_embeddings(self):
        return self.backbone.get_input_embeddings()

    def pool(self, outputs, mask):
        """The pooled vector (batch, width) from the backbone's outputs and the attention mask."""
        if self.pooling == "concat4":
            return torch.cat([h[:, 0] for h in outputs.hidden_states[-self.n_concat :]], dim=-1)
        hidden = outputs.last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "last":
            last = mask.sum(1).clamp(min=1) - 1  # right padding: the last real token
            return hidden[torch.arange(len(hidden), device=hidden.device), last]
        if self.pooling == "mean":
            m = mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * m).sum(1) / m.sum(1).clamp(min=1)
        return self.head.attention_pool(hidden, mask)

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        from transformers.modeling_outputs import SequenceClassifierOutput

        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        outputs = self.backbone(
            input_ids=input_ids, attention_mask=mask, output_hidden_states=self.pooling == "concat4", **kwargs
        )
        pooled = self.pool(outputs, mask)
        out, drop = self.head.head_out, self.head.head_dropout
        if self.training and self.samples > 1:
            logits = torch.stack([out(drop(pooled)) for _ in range(self.samples)]).mean(0)
        else:
            logits = out(drop(pooled))
        return SequenceClassifierOutput(logits=logits)


def save_head(model: PooledClassifier, directory: Path) -> None:
    from safetensors.torch import save_file

    from comp.atomic import atomic_path

    state = {k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}
    with atomic_path(Path(directory) / HEAD_FILE) as tmp:
        save_file(state, str(tmp))


def load_head(model: PooledClassifier, directory: Path) -> None:
    from safetensors.torch import load_file

    path = Path(directory) / HEAD_FILE
    if not path.is_file():
        raise ConfigError(f"{directory} holds no {HEAD_FILE}: the saved model had no pooled head")
    model.head.load_state_dict(load_file(str(path)))
