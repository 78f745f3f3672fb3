"""SFT examples: loss on the assistant's tokens only, pad/EOS/BOS per template, rare-label weights."""

from __future__ import annotations

import numpy as np
import pytest

from comp.llm.backends import TransformersBackend, label_probabilities
from comp.llm.prompts import chat_prompt
from comp.llm.schemes import Choice
from comp.llm.sft import IGNORE, SFTCollator, answers, example_weights, pad_id, sft_examples, weighted_lm_loss
from tests.tiny_llms import FAMILIES, chat_tokenizer, tiny_llm
from tests.tiny_models import CLASSES, synthetic

TEXTS = ["i love this game", "the bus was late and i hate it so much", "sad"]
ANSWERS = ["joy", "anger, sadness", "none"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def tok(request):
    return chat_tokenizer(request.param)


def test_loss_only_on_the_assistant_answer_and_its_end_of_turn(tok):
    prompt = chat_prompt(tok, "Tweet: {text}", system="Label the emotions.")
    for example, answer in zip(sft_examples(tok, prompt, TEXTS, ANSWERS, max_length=256), ANSWERS, strict=True):
        ids, labels = example["input_ids"], example["labels"]
        scored = [i for i, label in enumerate(labels) if label != IGNORE]
        assert scored == list(range(scored[0], len(ids)))  # one block, at the end
        assert [labels[i] for i in scored] == ids[scored[0] :]
        assert tok.decode(ids[scored[0] :]) == answer + prompt.end
        assert ids[-1] == tok.convert_tokens_to_ids(prompt.end)  # the model learns to stop
        prompt_part = tok.decode(ids[: scored[0]])
        assert prompt_part.endswith(prompt.tail) and "Label the emotions." in prompt_part
        if tok.bos_token_id is not None:
            assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id


@pytest.mark.parametrize("family", ["llama", "mistral"])
def test_padding_with_eos_keeps_the_answers_eos_in_the_loss(family):
    """Llama 3 and Mistral have no pad token: batches pad with EOS, which ends Mistral's answers."""
    tok = chat_tokenizer(family)
    assert tok.pad_token_id is None and pad_id(tok) == tok.eos_token_id
    prompt = chat_prompt(tok, "Tweet: {text}")
    examples = sft_examples(tok, prompt, TEXTS, ANSWERS, max_length=256, weights=[1.0, 2.0, 0.5])
    batch = SFTCollator(pad_id(tok), pad_to_multiple_of=8)(examples)
    assert batch["input_ids"].shape[1] % 8 == 0
    for i, example in enumerate(examples):
        n = len(example["input_ids"])
        assert batch["labels"][i, n - 1] == example["input_ids"][-1]  # the answer's end is learned
        assert (batch["labels"][i, n:] == IGNORE).all() and (batch["attention_mask"][i, n:] == 0).all()
        assert (batch["input_ids"][i, n:] == tok.eos_token_id).all()  # padded on the right
    assert batch["weight"].tolist() == [1.0, 2.0, 0.5]


def test_masks_agree_with_trl_prompt_completion(tok, tmp_path):
    """TRL's SFTTrainer tokenises conversational prompt/completion rows with the same chat template:
    its ids and completion-only labels are ours, plus the template's text after the end-of-turn."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, _ = tiny_llm("llama")
    model.resize_token_embeddings(len(tok))
    prompt = chat_prompt(tok, "Tweet: {text}")
    ours = sft_examples(tok, prompt, TEXTS, ANSWERS, max_length=256)
    rows = [
        {"prompt": [{"role": "user", "content": f"Tweet: {t}"}], "completion": [{"role": "assistant", "content": a}]}
        for t, a in zip(TEXTS, ANSWERS, strict=True)
    ]
    args = SFTConfig(output_dir=str(tmp_path), max_length=256, report_to=[], use_cpu=True, save_strategy="no")
    dataset = SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok
    ).train_dataset
    after_end = tok.apply_chat_template(
        [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}], tokenize=False
    ).split("y" + prompt.end, 1)[1]
    for mine, theirs in zip(ours, dataset, strict=True):
        n = len(mine["input_ids"])
        assert theirs["input_ids"][:n] == mine["input_ids"] and theirs["labels"][:n] == mine["labels"]
        assert tok.decode(theirs["input_ids"][n:]) == after_end  # "" or the template's newline


def test_answers_list_labels_in_a_seeded_order():
    Y = np.array([[1, 0, 1, 1], [0, 0, 0, 0], [0, 1, 0, 0]])
    a = answers(Y, CLASSES, seed=0)
    assert a == answers(Y, CLASSES, seed=0)
    assert sorted(a[0].split(", ")) == ["fear", "joy", "sadness"] and a[1:] == ["none", "anger"]
    orders = {answers(Y, CLASSES, seed=s)[0] for s in range(20)}
    assert len(orders) > 1  # shuffled: the first name is a fair draw among the row's labels
    assert answers(Y, CLASSES, shuffle=False)[0] == "joy, sadness, fear"
    assert answers(np.eye(4)[[2, 0]], CLASSES, task="multiclass") == ["sadness", "joy"]
    assert answers(np.array([[1], [0]]), ["neg", "pos"], task="binary") == ["pos", "neg"]


def test_rare_labels_weigh_more():
    Y = np.zeros((100, 3), dtype=int)
    Y[:60, 0] = 1
    Y[60:70, 1] = 1
    Y[70:72, 2] = 1  # 28 rows have no label
    w = example_weights(Y, power=0.5, max_weight=100)
    assert w.mean() == pytest.approx(1.0)
    assert w[70] > w[60] > w[72] > w[0]  # 2 rows < 10 rows < 28 empty rows < 60 rows
    assert w[70] / w[0] == pytest.approx((60 / 2) ** 0.5)
    capped = example_weights(Y, power=1.0, max_weight=5)
    assert capped.max() / capped.min() == pytest.approx(5.0)
    np.testing.assert_allclose(example_weights(Y, power=0), 1.0)
    both = Y.copy()
    both[0, 2] = 1  # a row with a common and a rare label weighs as its rarest
    assert example_weights(both)[0] == pytest.approx(example_weights(both)[70])


def test_weighted_loss_is_a_per_example_mean():
    import torch

    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    labels = torch.full((2, 5), IGNORE)
    labels[0, 3:] = torch.tensor([1, 2])
    labels[1, 2:] = torch.tensor([3, 4, 5])
    token = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), reduction="none"
    ).view(2, 4)
    first, second = token[0, 2:].mean(), token[1, 1:].mean()
    assert float(weighted_lm_loss(logits, labels)) == pytest.approx(float((first + second) / 2), rel=1e-6)
    weighted = weighted_lm_loss(logits, labels, torch.tensor([3.0, 1.0]))
    assert float(weighted) == pytest.approx(float((3 * first + second) / 4), rel=1e-6)


def test_fine_tuning_on_a_separable_task_beats_the_prior():
    """SFT examples -> weighted loss -> the label scorer: the answer words are learned."""
    import torch

    torch.manual_seed(0)
    model, tok = tiny_llm("qwen2", hidden=64)
    for p in model.parameters():  # start from the usual small init, not the spread-out test init
        if p.dim() > 1:
            torch.nn.init.normal_(p, 0, 0.02)
    texts, Y = synthetic(160, task="multiclass", seed=0)
    prompt = chat_prompt(tok, "Emotion of: {text}")
    train = sft_examples(tok, prompt, texts[:120], answers(Y[:120], CLASSES, task="multiclass"), max_length=64)
    collate = SFTCollator(pad_id(tok))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    rng = np.random.default_rng(0)
    for _ in range(15):  # epochs: the answer words are learned by the 12th on this data
        order = rng.permutation(len(train))
        for start in range(0, len(order), 16):
            batch = collate([train[i] for i in order[start : start + 16]])
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            loss = weighted_lm_loss(out.logits, batch["labels"])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    model.eval()
    proba = label_probabilities(TransformersBackend(model, tok), prompt, texts[120:], Choice(CLASSES))
    accuracy = (proba.argmax(1) == Y[120:].argmax(1)).mean()
    prior = Y[:120].mean(0).max()
    assert accuracy > prior + 0.25, (accuracy, prior)
