"""The LLM families through the fold loop: `model: prompt` (zero/few-shot, no training) and
`model: generative` (LoRA fine-tuning to answer with the labels), on tiny local Llama models."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from comp import cli, console
from comp.config import build
from comp.errors import ConfigError, RunError
from comp.models import generative as G
from comp.models import labelling
from comp.models import prompt as P
from comp.models.base import TaskInfo
from comp.runs import load_run
from comp.train import train
from tests.tiny_llms import save_llm
from tests.tiny_models import CLASSES, fold_context, synthetic

REPO = Path(__file__).resolve().parents[1]
MULTICLASS = TaskInfo("multiclass", CLASSES)
MULTILABEL = TaskInfo("multilabel", CLASSES)
USER = "Emotion of: {text}"
GENERATIVE_FAST = {
    "epochs": 10,
    "lr": 3e-3,
    "batch_size": 16,
    "grad_accumulation": 1,
    "max_length": 64,
    "warmup_ratio": 0.0,
    "scheduler": "constant",
    "prompt": USER,
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """A random tiny Llama 3-style chat model (usual small init, so it trains)."""
    return save_llm(tmp_path_factory.mktemp("llama"), "llama", hidden=64, std=0.02)


@pytest.fixture(scope="module")
def instructed_dir(tmp_path_factory):
    """A tiny Llama taught to answer ``USER``'s prompt with the emotion its cue words voice: the
    stand-in for an instruction-tuned model, trained here on rows the tests never score."""
    import torch

    from comp.llm.sft import SFTCollator, answers, pad_id, sft_examples, weighted_lm_loss
    from tests.tiny_llms import tiny_llm

    model, tok = tiny_llm("llama", hidden=64, std=0.02)
    config = build(P.Config, {"model": "prompt", "backbone": "x", "prompt": USER}, "test")
    prompt = labelling.build_prompt(config, tok, MULTICLASS, yes_no=False)
    texts, Y = synthetic(120, "multiclass", seed=11)
    examples = sft_examples(tok, prompt, texts, answers(Y, CLASSES, task="multiclass"), max_length=64)
    collate, rng = SFTCollator(pad_id(tok)), np.random.default_rng(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(12):
        order = rng.permutation(len(examples))
        for start in range(0, len(order), 16):
            batch = collate([examples[i] for i in order[start : start + 16]])
            loss = weighted_lm_loss(
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, batch["labels"]
            )
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    folder = tmp_path_factory.mktemp("instructed")
    model.eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _workspace(root: Path, train_rows: int = 48, test_rows: int = 16, seed: int = 3, task: str = "multiclass"):
    """A competition whose rows are ``synthetic``'s emotion texts (label names as values)."""
    from comp.fetch import fetch_local
    from comp.workspace import init_workspace
    from tests.helpers import TFIDF_CONFIG

    texts, Y = synthetic(train_rows + test_rows, task, seed=seed)
    ids = [f"r{i}" for i in range(len(texts))]
    source = root / "download"
    source.mkdir(parents=True)
    if task == "multiclass":
        labels = {"label": [CLASSES[i] for i in Y.argmax(1)]}
    else:
        labels = {c: Y[:, j].astype(int) for j, c in enumerate(CLASSES)}
    train_frame = pd.DataFrame({"id": ids, "text": texts, **labels}).iloc[:train_rows]
    train_frame.to_csv(source / "train.csv", index=False)
    pd.DataFrame({"id": ids[train_rows:], "text": texts[train_rows:]}).to_csv(source / "test.csv", index=False)
    blank = {"label": CLASSES[0]} if task == "multiclass" else dict.fromkeys(CLASSES, 0)
    pd.DataFrame({"id": ids[train_rows:], **blank}).to_csv(source / "sample_submission.csv", index=False)
    ws = init_workspace("test-comp", root / "ws", {"tfidf.yaml": TFIDF_CONFIG})
    fetch_local(ws, source)
    return ws


def _config_file(ws, name: str, text: str) -> Path:
    path = ws.configs_dir / f"{name}.yaml"
    path.write_text(text)
    return path


def _prior_f1(Y: np.ndarray) -> float:
    from comp.metrics import score

    majority = np.zeros_like(Y)
    majority[:, Y.sum(0).argmax()] = 1  # the prior's prediction: its most common class for every row
    return float(score("f1_macro", Y, majority, "multiclass"))


# ---- model: prompt ------------------------------------------------------------------------------
def test_a_prompt_run_beats_the_class_prior_and_blends_like_every_family(instructed_dir, tmp_path):
    from comp.ensemble import make_ensemble

    ws = _workspace(tmp_path)
    config = _config_file(ws, "zeroshot", f"model: prompt\nbackbone: {instructed_dir}\nprompt: '{USER}'\n")
    result = train(ws, config, n_folds=2)
    run = load_run(ws, "zeroshot", ws.load_settings().output_names)
    assert run.oof.shape == (48, 4) and run.test.shape == (16, 4)
    assert ((run.oof >= 0) & (run.oof <= 1)).all() and np.allclose(run.oof.sum(1), 1, atol=1e-9)
    Y = np.eye(4)[[run.classes.index(v) for v in pd.read_csv(ws.train_csv)["label"]]]
    accuracy = float((run.oof.argmax(1) == Y.argmax(1)).mean())
    assert accuracy > Y.mean(0).max() + 0.2, (accuracy, Y.mean(0).max())
    assert result.scores.at_05 > _prior_f1(Y) + 0.2
    # zero-shot: every fold's test prompt is the same, so its predictions equal and come from the cache once
    fold_tests = [np.load(ws.run("zeroshot").fold_test(k)) for k in (0, 1)]
    np.testing.assert_array_equal(fold_tests[0], fold_tests[1])
    log = ws.run("zeroshot").log.read_text()
    assert "fold 1 test: 16 rows read from the scoring cache" in log

    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=2)
    blend = make_ensemble(ws, ["zeroshot", "tfidf"], "blend")
    assert blend.weights == {"zeroshot": 0.5, "tfidf": 0.5}  # a full OOF blends like any run's: the plain mean
    np.testing.assert_allclose(
        load_run(ws, "blend").oof, (load_run(ws, "zeroshot").oof + load_run(ws, "tfidf").oof) / 2, rtol=0, atol=1e-12
    )


def test_few_shot_examples_never_come_from_the_held_out_fold_and_predict_round_trips(instructed_dir, tmp_path):
    from comp.folds import load_folds
    from comp.predict import predict_run

    ws = _workspace(tmp_path)
    config = _config_file(
        ws, "fewshot", f"model: prompt\nbackbone: {instructed_dir}\nprompt: '{USER}'\nfew_shot: 4\nsave_models: true\n"
    )
    train(ws, config, n_folds=3)
    paths = ws.run("fewshot")
    from comp.data import load_competition

    folds = load_folds(ws.folds_csv(3, ws.load_settings().seed, None), load_competition(ws), 3)
    texts = pd.read_csv(ws.train_csv)["text"].tolist()
    test_rows = []
    for k in range(3):
        saved = json.loads((paths.fold_model_dir(k) / P.SAVED).read_text())
        rows = saved["example_rows"]
        assert len(rows) == 4 and not (folds[rows] == k).any()  # never a row of the fold it scores
        assert [e[0] for e in saved["examples"]] == [texts[i] for i in rows]
        test_rows.append(saved["test_example_rows"])
    assert test_rows[0] == test_rows[1] == test_rows[2]  # one test prompt, drawn from all of train
    run = load_run(ws, "fewshot")
    frame = predict_run(ws.root, "fewshot", ws.test_csv)
    np.testing.assert_allclose(frame[run.classes].to_numpy(), run.test, atol=1e-12)


def test_binary_keeps_the_positive_class_share(instructed_dir, tmp_path):
    texts, _ = synthetic(12, "multiclass", seed=5)
    config = build(P.Config, {"model": "prompt", "backbone": str(instructed_dir), "prompt": USER}, "test")
    binary = TaskInfo("binary", ["anger"], negative="joy")
    P.preflight(config, binary)
    got = P.Model(config, binary, fold_context(tmp_path)).predict_proba(texts)
    two = P.Model(config, TaskInfo("multiclass", ["joy", "anger"]), fold_context(tmp_path)).predict_proba(texts)
    assert got.shape == (12, 1)
    np.testing.assert_allclose(got[:, 0], two[:, 1], atol=1e-12)


def test_multilabel_yes_no_probabilities_are_per_label(llama_dir, tmp_path):
    texts, Y = synthetic(20, "multilabel", seed=2)
    config = build(P.Config, {"model": "prompt", "backbone": str(llama_dir), "few_shot": 2}, "test")
    P.preflight(config, MULTILABEL)
    model = P.Model(config, MULTILABEL, fold_context(tmp_path)).fit(texts[:12], Y[:12], valid=(texts[12:], Y[12:]))
    proba = model.predict_oof(texts[12:])
    assert proba.shape == (8, 4) and ((proba > 0) & (proba < 1)).all()
    assert not np.allclose(proba.sum(1), 1)  # independent per label, not a softmax over labels


def test_a_partial_oof_is_scored_on_its_rows_and_refused_for_blending(instructed_dir, tmp_path, monkeypatch, capsys):
    ws = _workspace(tmp_path)
    config = _config_file(
        ws, "quick", f"model: prompt\nbackbone: {instructed_dir}\nprompt: '{USER}'\nscore_rows: 0.25\n"
    )
    result = train(ws, config, n_folds=2)
    paths = ws.run("quick")
    oof = pd.read_parquet(paths.oof)
    scored = oof[CLASSES].notna().all(axis=1)
    assert int(scored.sum()) == 12 and oof.loc[~scored, CLASSES].isna().all().all()  # 6 of 24 per fold
    assert list(oof.columns) == ["id", "fold", *sorted(CLASSES)]  # the same schema as every family
    assert sum(r["rows"] for r in result.scores.per_fold) == 12
    assert json.loads(paths.scores.read_text())["partial_oof"] == {"scored_rows": 12, "train_rows": 48}
    with pytest.raises(RunError, match="run 'quick' scored only 12 of 48 train rows .*cannot be blended"):
        load_run(ws, "quick")
    from comp.runs import list_runs

    assert {r.name: r.status for r in list_runs(ws)}["quick"] == "partial OOF: 12/48 rows"
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=2)
    monkeypatch.setattr(sys, "argv", ["comp", "--workspace", str(ws.root), "ensemble", "quick", "tfidf", "--name", "b"])
    monkeypatch.setattr(console.err, "_width", 10_000)
    with pytest.raises(SystemExit) as done:
        cli.main()
    err = capsys.readouterr().err.strip().splitlines()
    assert done.value.code == 1 and len(err) == 1 and "run 'quick' scored only 12 of 48" in err[0]


def _kill_9_at(ws, config: Path, kill_at: str, tmp_path: Path, chunk_rows: int | None = None) -> None:
    """Start `comp train CONFIG --folds 2` in a process of its own, hold it at ``kill_at``
    (tests/kill_point.py) and kill -9 it there."""
    import os
    import signal
    import subprocess
    import time

    mark = tmp_path / "at-kill-point"
    env = {
        **os.environ,
        "COMP_KILL_AT": kill_at,
        "COMP_KILL_MARK": str(mark),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        **({"COMP_CHUNK_ROWS": str(chunk_rows)} if chunk_rows else {}),
    }
    victim = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "tests" / "kill_point.py"),
            "--workspace",
            str(ws.root),
            "train",
            str(config),
            "--folds",
            "2",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 600
    while not mark.exists():
        assert victim.poll() is None, victim.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the run never reached the kill point"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=60) == -signal.SIGKILL


def test_a_prompt_fold_killed_9_mid_scoring_resumes_at_its_first_unscored_chunk(instructed_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(labelling, "CHUNK_ROWS", 5)
    reference_ws = _workspace(tmp_path / "reference")
    text = f"model: prompt\nbackbone: {instructed_dir}\nprompt: '{USER}'\nfew_shot: 2\n"
    train(reference_ws, _config_file(reference_ws, "p", text), n_folds=2)

    ws = _workspace(tmp_path / "killed")
    config = _config_file(ws, "p", text)
    _kill_9_at(ws, config, "comp.llm.scorer:CausalLMScorer.score_ids:3", tmp_path, chunk_rows=5)
    assert not ws.run("p").fold_done(0).exists()
    train(ws, config, n_folds=2)
    log = ws.run("p").log.read_text()
    assert "fold 0 held-out: scored 14 of 24 rows" in log  # its first two chunks of 5 survived the kill
    np.testing.assert_array_equal(load_run(ws, "p").oof, load_run(reference_ws, "p").oof)
    np.testing.assert_array_equal(load_run(ws, "p").test, load_run(reference_ws, "p").test)


# ---- model: generative ----------------------------------------------------------------------------
def test_generative_training_lowers_the_loss_beats_the_prior_and_its_adapter_round_trips(llama_dir, tmp_path):
    texts, Y = synthetic(160, "multiclass", seed=0)
    config = build(G.Config, {"model": "generative", "backbone": str(llama_dir), **GENERATIVE_FAST}, "test")
    G.preflight(config, MULTICLASS)
    model = G.Model(config, MULTICLASS, fold_context(tmp_path)).fit(texts[:120], Y[:120])
    assert model.losses_[-1] < model.losses_[0] - 0.3, model.losses_
    trainable = [n for n, p in model.model_.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    proba = model.predict_proba(texts[120:])
    assert proba.shape == (40, 4) and np.allclose(proba.sum(1), 1)
    accuracy = (proba.argmax(1) == Y[120:].argmax(1)).mean()
    assert accuracy > Y[:120].mean(0).max() + 0.1, accuracy

    model.save(tmp_path / "adapter")
    names = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", G.SAVED} <= names
    assert not any(n.startswith("model") for n in names)  # the base is not copied
    loaded = G.Model.load(tmp_path / "adapter", config, MULTICLASS, fold_context(tmp_path))
    np.testing.assert_allclose(loaded.predict_proba(texts[120:]), proba, atol=1e-6)


def test_the_trimmed_logits_give_the_full_loss(llama_dir):
    import torch

    from comp.llm.sft import SFTCollator, answers, pad_id, sft_examples, weighted_lm_loss
    from comp.models.hf import hub

    tok = hub.load_tokenizer(str(llama_dir))
    model = __import__("transformers").AutoModelForCausalLM.from_pretrained(llama_dir).eval()
    config = build(G.Config, {"model": "generative", "backbone": str(llama_dir), "prompt": USER}, "test")
    texts, Y = synthetic(6, "multilabel", seed=4)
    prompt = labelling.build_prompt(config, tok, MULTILABEL, yes_no=False)
    examples = sft_examples(tok, prompt, texts, answers(Y, CLASSES), max_length=64, weights=[1, 2, 1, 1, 3, 1])
    full = SFTCollator(pad_id(tok))(examples)
    trimmed = G.AnswerCollator(pad_id(tok))(examples)
    assert trimmed["labels"].shape[1] < full["labels"].shape[1]
    with torch.no_grad():
        want = weighted_lm_loss(
            model(input_ids=full["input_ids"], attention_mask=full["attention_mask"]).logits,
            full["labels"],
            full["weight"],
        )
        got = G.lm_loss(
            model(
                input_ids=trimmed["input_ids"],
                attention_mask=trimmed["attention_mask"],
                logits_to_keep=trimmed["logits_to_keep"],
            ).logits,
            trimmed["labels"],
            trimmed["sample_weight"],
        )
    assert float(got) == pytest.approx(float(want), rel=1e-5)


def test_a_generative_run_killed_9_mid_fold_resumes_to_the_same_oof_and_predicts(llama_dir, tmp_path):
    from comp.predict import predict_run

    text = (
        f"model: generative\nbackbone: {llama_dir}\nprompt: '{USER}'\nepochs: 2\nbatch_size: 8\n"
        "grad_accumulation: 1\nmax_length: 64\nlr: 3.0e-3\ncheckpoint_every: 2\nsave_models: true\n"
        "peft: {method: lora, r: 4, alpha: 8}\n"
    )
    reference_ws = _workspace(tmp_path / "reference", train_rows=24, test_rows=8, task="multilabel")
    train(reference_ws, _config_file(reference_ws, "g", text), n_folds=2)

    ws = _workspace(tmp_path / "killed", train_rows=24, test_rows=8, task="multilabel")
    config = _config_file(ws, "g", text)
    # fold 0 has 2 steps per epoch: held at step 4, after checkpoint-2 was written
    _kill_9_at(ws, config, "comp.models.hf.trainer:CompTrainer.training_step:4", tmp_path)
    assert (ws.run("g").fold_dir(0) / "checkpoint" / "checkpoint-2").is_dir()
    train(ws, config, n_folds=2)
    assert "fold 0: resuming from checkpoint-2 (step 2)" in ws.run("g").log.read_text()
    run, reference = load_run(ws, "g"), load_run(reference_ws, "g")
    np.testing.assert_allclose(run.oof, reference.oof, atol=1e-5)
    np.testing.assert_allclose(run.test, reference.test, atol=1e-5)
    assert ((run.oof >= 0) & (run.oof <= 1)).all()

    frame = predict_run(ws.root, "g", ws.test_csv)
    np.testing.assert_allclose(frame[run.classes].to_numpy(), run.test, atol=1e-6)


# ---- bad values: one line naming the key ------------------------------------------------------------
@pytest.mark.parametrize(
    "family, raw, message",
    [
        ("prompt", {"prompt": "no text here"}, "prompt must contain {text} exactly once"),
        ("prompt", {"few_shot": -1}, "few_shot must be 0 or more"),
        ("prompt", {"score_rows": 1.5}, "score_rows must be a fraction in"),
        ("prompt", {"backend": "llama-cpp"}, "backend: llama-cpp runs a .gguf file"),
        ("prompt", {"question": "Is it?"}, "question must contain {label}"),
        ("prompt", {"label_words": {"joy": "happy"}}, "label_words.joy must be a non-empty list"),
        ("prompt", {"method": "fast"}, "method: 'fast' is not one of tree, expand, naive"),
        ("generative", {"lr": 0}, "lr must be positive"),
        ("generative", {"rare_label_power": -1}, "rare_label_power must not be negative"),
        ("generative", {"max_example_weight": 0.5}, "max_example_weight must be at least 1"),
    ],
)
def test_bad_values_are_one_line_naming_the_key(family, raw, message, llama_dir):
    cls = P.Config if family == "prompt" else G.Config
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}").replace("(", r"\(")) as err:
        build(cls, {"model": family, "backbone": str(llama_dir), **raw}, "cfg.yaml")
    assert "\n" not in str(err.value) and str(err.value).startswith("cfg.yaml: ")


@pytest.mark.parametrize(
    "family, raw, message",
    [
        ("prompt", {"label_words": {"happiness": ["joy"]}}, "label_words names unknown label"),
        ("prompt", {"scheme": "yesno"}, "scheme: yesno gives independent per-label probabilities"),
        ("prompt", {"max_length": 20}, "leaves no room for the text"),
        ("generative", {"peft": {"method": "lora", "rank": 4}}, "rank"),
        ("generative", {"max_length": 20}, "leaves no room"),
    ],
)
def test_preflight_refuses_before_any_fold_with_one_line(
    family, raw, message, llama_dir, tmp_path, monkeypatch, capsys
):
    ws = _workspace(tmp_path)
    body = "".join(f"{k}: {json.dumps(v)}\n" for k, v in raw.items())
    config = _config_file(ws, "bad", f"model: {family}\nbackbone: {llama_dir}\n{body}")
    monkeypatch.setattr(sys, "argv", ["comp", "--workspace", str(ws.root), "train", str(config), "--folds", "2"])
    monkeypatch.setattr(console.err, "_width", 10_000)
    with pytest.raises(SystemExit) as done:
        cli.main()
    err = capsys.readouterr().err.strip().splitlines()
    assert done.value.code == 1 and len(err) == 1, err
    assert message in err[0] and "bad.yaml" in err[0]
    assert not ws.run("bad").dir.exists()  # nothing written


# ---- the shipped LLM configs ------------------------------------------------------------------------
LLM_CONFIGS = [
    "qwen2.5-7b-instruct-zeroshot",
    "llama-3.2-3b-instruct-fewshot",
    "llama-3.2-3b-instruct-generative-qlora",
    "gguf-zeroshot",
]


@pytest.mark.parametrize("name", LLM_CONFIGS)
def test_shipped_llm_configs_pass_preflight_on_a_local_stand_in(name, llama_dir):
    """Each config's prompt, question and keys, with the backbone swapped for a tiny local chat model
    (the backend for the GGUF one: its file is the user's), build and fit before any fold."""
    from comp.models import load_model_config

    repo = Path(__file__).resolve().parents[1]
    overrides = [f"backbone={llama_dir}"] + (["backend=transformers"] if name == "gguf-zeroshot" else [])
    config = load_model_config(repo / "comp" / "configs" / f"{name}.yaml", overrides)
    assert config.model == ("generative" if "generative" in name else "prompt")
    if config.model == "generative":
        config.quantization = "none"  # no 4-bit kernels on this CPU
        G.preflight(config, MULTILABEL)
    else:
        P.preflight(config, MULTILABEL)
        P.preflight(config, MULTICLASS)
    text = (repo / "comp" / "configs" / f"{name}.yaml").read_text()
    assert "ESTIMATE" in text and "memory" in text.lower()


@pytest.mark.parametrize("family", ["qwen2", "gemma", "mistral"])
def test_generative_trains_and_reloads_on_each_chat_family(family, tmp_path):
    """Pad / EOS / BOS conventions and chat templates of Qwen2 (pad token of its own), Gemma (no system
    role) and Mistral (EOS ends the answer, no pad token): a short fit, the adapter saved and reloaded."""
    backbone = save_llm(tmp_path / family, family, hidden=32, std=0.02)
    texts, Y = synthetic(16, "multilabel", seed=6)
    config = build(
        G.Config,
        {
            "model": "generative",
            "backbone": str(backbone),
            "epochs": 1,
            "batch_size": 8,
            "grad_accumulation": 1,
            "max_length": 128,
            "system": "Label the emotions.",
            "peft": {"method": "lora", "r": 4, "alpha": 8},
        },
        "test",
    )
    G.preflight(config, MULTILABEL)
    model = G.Model(config, MULTILABEL, fold_context(tmp_path)).fit(texts, Y)
    proba = model.predict_proba(texts[:4])
    assert proba.shape == (4, 4) and ((proba >= 0) & (proba <= 1)).all()
    model.save(tmp_path / "adapter")
    loaded = G.Model.load(tmp_path / "adapter", config, MULTILABEL, fold_context(tmp_path))
    np.testing.assert_allclose(loaded.predict_proba(texts[:4]), proba, atol=1e-6)
