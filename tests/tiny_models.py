"""Tiny random BERT- and RoBERTa-shaped backbones for tests: no downloads.

A tokenizer is trained with `tokenizers` on the test's own texts, a model with hidden size 64 is
built from a config, and both are saved with ``save_pretrained`` to a folder that a config's
``backbone:`` can point at.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

CUES = {
    "joy": ["happy", "love", "great", "smile"],
    "anger": ["angry", "hate", "furious", "rage"],
    "sadness": ["sad", "cry", "lonely", "tears"],
    "fear": ["scared", "afraid", "nervous", "panic"],
}
FILLER = (
    "the a my this that today just so really game work coffee bus train phone weekend monday friends "
    "team music movie city rain news school class meeting dinner lunch morning night week people"
).split()
CLASSES = list(CUES)


def synthetic(n: int = 120, task: str = "multilabel", seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Texts whose labels are voiced by cue words, of varied length (3..20 words).

    Returns ``(texts, Y)`` with Y of shape (n, 4): multilabel indicators (rows may be empty) or
    multiclass one-hot rows.
    """
    rng = np.random.default_rng(seed)
    k = len(CLASSES)
    if task == "multiclass":
        Y = np.eye(k)[rng.integers(0, k, n)]
    else:
        Y = (rng.random((n, k)) < np.array([0.4, 0.3, 0.25, 0.2])).astype(float)
    texts = []
    for row in Y:
        words = list(rng.choice(FILLER, size=int(rng.integers(2, 16))))
        for c in np.flatnonzero(row):
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(CUES[CLASSES[c]])))
        texts.append(" ".join(words))
    return texts, Y


def _corpus() -> list[str]:
    words = FILLER + [w for cues in CUES.values() for w in cues]
    return [" ".join(words[i:] + words[:i]) for i in range(len(words))]


def bert_tokenizer():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(_corpus(), trainers.WordPieceTrainer(vocab_size=200, special_tokens=special))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
    )


def roberta_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.train_from_iterator(
        _corpus(),
        trainers.BpeTrainer(
            vocab_size=400, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>"))
    )
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        cls_token="<s>",
        sep_token="</s>",
        mask_token="<mask>",
        model_max_length=128,
    )


def make_backbone(folder: Path, kind: str = "bert", seed: int = 0) -> Path:
    """Save a tiny random ``kind`` (bert | roberta) encoder + tokenizer to ``folder``; return it."""
    import torch
    from transformers import AutoModel, BertConfig, RobertaConfig

    folder = Path(folder)
    tokenizer = bert_tokenizer() if kind == "bert" else roberta_tokenizer()
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=130,
        pad_token_id=tokenizer.pad_token_id,
    )
    if kind == "bert":
        config = BertConfig(**common)
    else:
        config = RobertaConfig(**common, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    model = AutoModel.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# ---- decoders: tiny random Llama- and Qwen2-shaped LLMs -----------------------------------------
def _byte_bpe(special: list[str], vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        _corpus() + ["Tweet: x\nEmotions:"],
        trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    return tok


def llama_tokenizer():
    """Byte-level BPE that prepends ``<s>`` and has no pad token (as Llama 3 and Mistral)."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    tok = _byte_bpe(["<s>", "</s>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", model_max_length=128)


def qwen2_tokenizer():
    """Byte-level BPE without BOS whose pad token is ``<|endoftext|>`` (as Qwen2)."""
    from transformers import PreTrainedTokenizerFast

    tok = _byte_bpe(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=128
    )


def make_decoder(folder: Path, kind: str = "llama", seed: int = 0) -> Path:
    """Save a tiny random ``kind`` (llama | qwen2) causal LM + tokenizer to ``folder``; return it.

    Saved as a causal LM, as hub checkpoints are: AutoModelForSequenceClassification adds the head.
    """
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    folder = Path(folder)
    tokenizer = llama_tokenizer() if kind == "llama" else qwen2_tokenizer()
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=256,
        eos_token_id=tokenizer.eos_token_id,
    )
    if kind == "llama":
        config = LlamaConfig(**common, bos_token_id=tokenizer.bos_token_id, pad_token_id=None)
    else:
        config = Qwen2Config(**common, tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def fold_context(tmp_path, logs=None, fold=0):
    """A FoldContext in tmp_path; log lines go to ``logs`` (a list) when given."""
    from comp.models.base import FoldContext

    return FoldContext(
        fold=fold,
        seed=0,
        cache_dir=tmp_path / ".cache",
        fold_dir=tmp_path / f"fold-{fold}",
        log=(logs.append if logs is not None else (lambda m: None)),
    )


@contextlib.contextmanager
def crash_at_training_step(n: int):
    """Raise KeyboardInterrupt at the n-th training step of the transformer family's Trainer."""
    from comp.models.hf.trainer import CompTrainer as trainer

    original = trainer.training_step
    calls = [0]

    def step(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            raise KeyboardInterrupt("simulated crash")
        return original(self, *args, **kwargs)

    trainer.training_step = step
    try:
        yield
    finally:
        trainer.training_step = original
