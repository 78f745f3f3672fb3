import pytest

from comp.config import parse_overrides
from comp.errors import ConfigError
from comp.models import load_model_config


def _write(tmp_path, text):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return path


def test_defaults_yaml_and_overrides(tmp_path):
    path = _write(tmp_path, "model: tfidf\nC: 2\n")
    config = load_model_config(path, ["min_df=3", "word_ngrams=[1, 3]", "char_ngrams=null"])
    assert config.C == 2.0 and isinstance(config.C, float)
    assert config.min_df == 3 and config.word_ngrams == [1, 3] and config.char_ngrams is None
    assert config.sublinear_tf is True  # default kept


def test_unknown_key_lists_valid_keys(tmp_path):
    path = _write(tmp_path, "model: tfidf\nlearning_rate: 0.1\n")
    with pytest.raises(
        ConfigError, match=r"unknown key\(s\) learning_rate; valid keys are: C, char_ngrams, class_weight"
    ):
        load_model_config(path)


def test_unknown_model_lists_families(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown model 'svm'; available models are: .*tfidf"):
        load_model_config(_write(tmp_path, "model: svm\n"))


def test_wrong_type_in_set(tmp_path):
    path = _write(tmp_path, "model: tfidf\n")
    with pytest.raises(ConfigError, match=r"min_df: expected an integer, got 'lots'"):
        load_model_config(path, ["min_df=lots"])
    with pytest.raises(ConfigError, match=r"sublinear_tf: expected true or false, got 3"):
        load_model_config(path, ["sublinear_tf=3"])
    with pytest.raises(ConfigError, match=r"--set 'C' is not of the form key=value"):
        load_model_config(path, ["C"])


def test_cross_field_check(tmp_path):
    with pytest.raises(ConfigError, match="word_ngrams and char_ngrams are both null"):
        load_model_config(_write(tmp_path, "model: tfidf\nword_ngrams: null\nchar_ngrams: null\n"))


def test_nested_overrides():
    assert parse_overrides(["peft.r=8", "peft.alpha=16", "lr=2e-5"]) == {"peft": {"r": 8, "alpha": 16}, "lr": 2e-5}


def test_optional_section_reports_its_own_error():
    from dataclasses import dataclass, field

    from comp.config import build

    @dataclass
    class Inner:
        r: int = 8

    @dataclass
    class Outer:
        inner: Inner | None = field(default=None)

    with pytest.raises(ConfigError, match=r"x: inner: r: expected an integer, got 'big'"):
        build(Outer, {"inner": {"r": "big"}}, "x")
