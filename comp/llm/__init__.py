"""LLMs that label by reading: prompts, the label scorer, few-shot examples, SFT examples, backends.

Pure building blocks for the ``model: prompt`` (zero/few-shot) and ``model: generative`` (SFT)
families. Nothing here loads a model from a name: functions take an already loaded causal LM and
its tokenizer (or plain arrays), so they plug onto whatever hub / strategy code builds them.

- :mod:`comp.llm.prompts`   a prompt as ``head + text + tail`` (+ per-label question), through the
                            tokenizer's chat template or a plain template; few-shot turns.
- :mod:`comp.llm.encoding`  token ids by segment (shared head once, per-row text, candidates);
                            truncation from the text only.
- :mod:`comp.llm.scorer`    log-probabilities of candidate answers from a transformers causal LM,
                            batched and length-sorted, the shared head's KV cache reused.
- :mod:`comp.llm.cache`     the scorer's KV-cache plumbing: the candidates' token trie, the cache
                            keyword of the model's forward, the sliding window.
- :mod:`comp.llm.schemes`   label verbalisations -> candidates -> class probabilities
                            (:class:`Choice` for one-of-K, :class:`YesNo` per label for multilabel).
- :mod:`comp.llm.fewshot`   fold-honest, class-covering, seeded few-shot example selection.
- :mod:`comp.llm.sft`       chat-formatted SFT examples with loss on the answer tokens only,
                            per-example weights for rare labels, the collator and weighted loss.
- :mod:`comp.llm.backends`  one interface over transformers (also GGUF files), llama-cpp-python, vLLM.
"""
