"""comp.submission (build + validate) and comp.evaluate, without Kaggle or a workspace."""

import io

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from comp.errors import ConfigError, DataError, RunError
from comp.evaluate import score_frames, settings_from_key
from comp.metrics import score
from comp.submission import (
    build_submission,
    check_submission,
    default_message,
    layout,
    parse_submission,
    submission_text,
    threshold_vector,
    validate_submission,
)
from comp.thresholds import apply_thresholds
from comp.workspace import CompSettings


def _settings(task, label_columns, classes, fmt="labels", min_labels=0, id_column="id"):
    return CompSettings(
        competition="x",
        task=task,
        id_column=id_column,
        text_columns=["text"],
        label_columns=label_columns,
        classes=classes,
        submission_format=fmt,
        min_labels=min_labels,
    )


def _sample(ids, label_columns, id_column="id"):
    return pd.DataFrame({id_column: pd.Series(ids, dtype="str"), **{c: "0" for c in label_columns}})


def _valid(frame, sample, settings):
    return check_submission(parse_submission(submission_text(frame)), sample, settings)


MULTILABEL = _settings("multilabel", ["joy", "anger", "fear"], ["joy", "anger", "fear"])


# ---- building ----------------------------------------------------------------------------------


def test_multilabel_thresholds_and_sample_order():
    test_ids = ["003", "001", "002"]
    P = np.array([[0.9, 0.1, 0.35], [0.2, 0.6, 0.1], [0.5, 0.5, 0.5]])
    sample = _sample(["001", "002", "003"], ["joy", "anger", "fear"])
    frame = build_submission(test_ids, P, MULTILABEL, sample, np.array([0.5, 0.7, 0.3]))
    assert submission_text(frame) == "id,joy,anger,fear\n001,0,0,0\n002,1,0,1\n003,1,0,1\n"
    assert frame["joy"].dtype == np.int64 and pd.api.types.is_string_dtype(frame["id"])
    # min_labels=1 gives row 001 its most probable class
    frame = build_submission(test_ids, P, MULTILABEL, sample, np.array([0.5, 0.7, 0.3]), min_labels=1)
    assert frame.loc[0, ["joy", "anger", "fear"]].tolist() == [0, 1, 0]


def test_sample_column_order_is_kept():
    settings = _settings("multilabel", ["b", "a"], ["b", "a"])
    sample = pd.DataFrame({"a": ["0"], "id": ["x"], "b": ["0"]})
    frame = build_submission(["x"], np.array([[0.9, 0.1]]), settings, sample)
    assert list(frame.columns) == ["a", "id", "b"] and frame.loc[0, "b"] == 1 and frame.loc[0, "a"] == 0


@pytest.mark.parametrize(
    ("classes", "expected"),
    [([0, 1, 2], "id,label\nr1,2\nr2,0\n"), (["neg", "neu", "pos"], "id,label\nr1,pos\nr2,neg\n")],
)
def test_multiclass_class_values_as_in_train(classes, expected):
    settings = _settings("multiclass", ["label"], classes)
    P = np.array([[0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])
    frame = build_submission(["r1", "r2"], P, settings, _sample(["r1", "r2"], ["label"]))
    assert submission_text(frame) == expected
    # offsets shift the argmax: +0.3 on the middle class
    frame = build_submission(["r1", "r2"], P, settings, _sample(["r1", "r2"], ["label"]), np.array([0, 0.3, 0]))
    assert frame["label"].astype(str).tolist() == [str(classes[1]), str(classes[1])]


@pytest.mark.parametrize(("classes", "values"), [([0, 1], ["1", "0"]), (["ham", "spam"], ["spam", "ham"])])
def test_binary_labels_and_probabilities(classes, values):
    settings = _settings("binary", ["target"], classes)
    P = np.array([[0.8], [0.3]])
    sample = _sample(["a", "b"], ["target"])
    assert build_submission(["a", "b"], P, settings, sample)["target"].astype(str).tolist() == values
    proba = _settings("binary", ["target"], classes, fmt="probabilities")
    frame = build_submission(["a", "b"], P, proba, sample)
    assert submission_text(frame) == "id,target\na,0.8\nb,0.3\n" and _valid(frame, sample, proba) == []


def test_multiclass_with_a_column_per_class():
    settings = _settings("multiclass", ["pos", "neg"], ["neg", "pos"])
    sample = pd.DataFrame({"id": ["1", "2"], "pos": ["0", "0"], "neg": ["0", "0"]})
    P = np.array([[0.7, 0.3], [0.2, 0.8]])
    assert submission_text(build_submission(["1", "2"], P, settings, sample)) == "id,pos,neg\n1,0,1\n2,1,0\n"
    proba = _settings("multiclass", ["pos", "neg"], ["neg", "pos"], fmt="probabilities")
    assert submission_text(build_submission(["1", "2"], P, proba, sample)) == "id,pos,neg\n1,0.3,0.7\n2,0.8,0.2\n"


def test_layout_errors():
    with pytest.raises(ConfigError, match="single label column 'label' for 3 classes; set submission_format: labels"):
        layout(_settings("multiclass", ["label"], [0, 1, 2], fmt="probabilities"))
    with pytest.raises(ConfigError, match=r"label_columns \(a, b\) do not match the classes \(x, y\)"):
        layout(_settings("multiclass", ["a", "b"], ["x", "y"]))


def test_run_ids_must_match_the_sample():
    sample = _sample(["1", "2", "3"], ["joy", "anger", "fear"])
    with pytest.raises(
        RunError, match=r"test ids differ from sample_submission.csv's \(1 missing: 3; 1 not in the sample: 9\)"
    ):
        build_submission(["1", "2", "9"], np.zeros((3, 3)), MULTILABEL, sample)
    with pytest.raises(RunError, match="repeat ids 1"):
        build_submission(["1", "1", "2"], np.zeros((3, 3)), MULTILABEL, sample)
    with pytest.raises(RunError, match=r"shape \(3, 2\), expected \(3, 3\)"):
        build_submission(["1", "2", "3"], np.zeros((3, 2)), MULTILABEL, sample)


def test_threshold_vector():
    raw = {
        "metric": "f1_macro",
        "task": "multilabel",
        "min_labels": 1,
        "thresholds": {"joy": 0.3, "anger": 0.4, "fear": 0.7},
    }
    t, k = threshold_vector(raw, MULTILABEL)
    assert t.tolist() == [0.3, 0.4, 0.7] and k == 1
    # never a silent 0.5: the run's CV was measured with tuned thresholds
    with pytest.raises(RunError, match=r"runs/x/thresholds.json is missing, .*re-fit it with `comp thresholds x`"):
        threshold_vector(None, MULTILABEL, "runs/x/thresholds.json", "x")
    nan = {**raw, "metric": "log_loss", "thresholds": {**raw["thresholds"], "anger": float("nan")}}
    with pytest.raises(RunError, match=r"no tuned threshold for class\(es\) anger \(fitted for metric log_loss, "):
        threshold_vector(nan, MULTILABEL)
    with pytest.raises(RunError, match="no threshold for class\\(es\\) fear"):
        threshold_vector({"task": "multilabel", "thresholds": {"joy": 0.3, "anger": 0.4}}, MULTILABEL)
    with pytest.raises(RunError, match="fitted for a multiclass task, comp.yaml says multilabel"):
        threshold_vector({"task": "multiclass", "thresholds": {}, "metric": "f1_macro"}, MULTILABEL)


def test_default_message():
    scores = {"metric": "f1_macro", "cv": {"at_0.5": 0.5, "tuned": 0.61234, "honest": 0.6}}
    assert default_message("blend1", scores) == "blend1: CV f1_macro tuned 0.6123, honest 0.6000"
    assert default_message("blend1", {}) == "blend1"


# ---- validation --------------------------------------------------------------------------------

SAMPLE = _sample(["007", "008", "009"], ["joy", "anger", "fear"])


def _frame(text):
    return parse_submission(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "id,anger,joy,fear\n007,0,0,0\n008,0,0,0\n009,0,0,0\n",
            "columns are in the order id, anger, joy, fear; sample_submission.csv has id, joy, anger, fear",
        ),
        ("id,joy,anger\n007,0,0\n008,0,0\n009,0,0\n", r"missing: fear; unexpected: none"),
        ("id,joy,anger,fear,x\n007,0,0,0,1\n008,0,0,0,1\n009,0,0,0,1\n", r"missing: none; unexpected: x"),
        ("id,joy,anger,fear\n007,0,0,0\n008,0,0,0\n", "2 rows, sample_submission.csv has 3"),
        ("id,joy,anger,fear\n7,0,0,0\n008,0,0,0\n009,0,0,0\n", r"1 id\(s\) missing \(007\), 1 unknown \(7\)"),
        (
            "id,joy,anger,fear\n008,0,0,0\n007,0,0,0\n009,0,0,0\n",
            "not in sample_submission.csv's order: line 2 has '008'",
        ),
        ("id,joy,anger,fear\n007,0,0,0\n007,0,0,0\n009,0,0,0\n", "'id' repeats ids 007"),
        (
            "id,joy,anger,fear\n007,0,,0\n008,0,0,0\n009,0, ,0\n",
            r"column 'anger' is empty on 2 line\(s\): 2, 4 \(ids 007, 009\)",
        ),
        (
            "id,joy,anger,fear\n007,0,0,0\n008,2,0,0\n009,0,0,yes\n",
            r"column 'joy' has values other than 0, 1 \('2'\) on 1 line\(s\): 3 \(ids 008\).*column 'fear'",
        ),
    ],
)
def test_validation_names_rows_and_columns(text, message):
    problems = check_submission(_frame(text), SAMPLE, MULTILABEL)
    assert problems
    with pytest.raises(DataError, match=message):
        raise DataError("; ".join(problems))


def test_validate_submission_checks_the_written_text():
    ok = pd.DataFrame({"id": ["007", "008", "009"], "joy": [1, 0, 1], "anger": 0, "fear": 0})
    assert validate_submission(ok, SAMPLE, MULTILABEL).startswith("id,joy,anger,fear\n007,1,0,0\n")
    # ints that became floats (a NaN upstream) are not 0/1 in the file: "1.0"
    bad = ok.assign(joy=[1.0, np.nan, 0.0])
    with pytest.raises(
        DataError,
        match=r"nothing was written or uploaded: column 'joy' is empty on 1 line\(s\): 3 "
        r"\(ids 008\); column 'joy' has values other than 0, 1 \('1.0', '0.0'\)",
    ):
        validate_submission(bad, SAMPLE, MULTILABEL)


def test_probability_and_class_values_are_checked():
    proba = _settings("binary", ["target"], [0, 1], fmt="probabilities")
    sample = _sample(["a", "b", "c"], ["target"])
    frame = _frame("id,target\na,0.5\nb,1.5\nc,-0\n")
    assert check_submission(frame, sample, proba) == [
        "column 'target' has values other than probabilities in [0, 1] ('1.5') on 1 line(s): 3 (ids b)"
    ]
    labels = _settings("multiclass", ["target"], ["neg", "neu", "pos"])
    frame = _frame("id,target\na,neg\nb,Pos\nc,0\n")
    assert check_submission(frame, sample, labels) == [
        "column 'target' has values other than neg, neu, pos ('Pos', '0') on 2 line(s): 3, 4 (ids b, c)"
    ]


# ---- the property: what comp builds, comp accepts, and pandas reads back unchanged -------------

_NAME = st.text("abcdefghijklmnopqrstuvwxyzABC_0123456789", min_size=1, max_size=8)
_CLASS_STR = st.text("abcxyz019 ,\"'é-NA", min_size=1, max_size=6).filter(lambda s: s == s.strip())


@st.composite
def _case(draw):
    kind = draw(
        st.sampled_from(
            ["multilabel", "multiclass", "binary", "proba-binary", "proba-multilabel", "multiclass-columns"]
        )
    )
    n = draw(st.integers(1, 25))
    if draw(st.booleans()):  # numeric ids with leading zeros
        width = draw(st.integers(2, 6))
        ids = [
            f"{v:0{width}d}" for v in draw(st.lists(st.integers(0, 10**width - 1), min_size=n, max_size=n, unique=True))
        ]
    else:
        ids = draw(st.lists(_NAME, min_size=n, max_size=n, unique=True))
    names = draw(st.lists(_NAME, min_size=6, max_size=6, unique=True))
    id_column, single = names[0], names[1]
    if draw(st.booleans()):
        classes = draw(st.lists(st.integers(-3, 10**6), min_size=2, max_size=5, unique=True))
    else:
        classes = draw(st.lists(_CLASS_STR, min_size=2, max_size=5, unique=True))
    min_labels = 0
    if kind in ("multilabel", "proba-multilabel"):
        label_columns = draw(st.lists(_NAME.filter(lambda s: s != id_column), min_size=1, max_size=5, unique=True))
        settings = _settings(
            "multilabel",
            label_columns,
            label_columns,
            "probabilities" if kind.startswith("proba") else "labels",
            min_labels=draw(st.integers(0, 2)),
            id_column=id_column,
        )
        min_labels = settings.min_labels
    elif kind in ("binary", "proba-binary"):
        settings = _settings(
            "binary",
            [single],
            classes[:2],
            "probabilities" if kind.startswith("proba") else "labels",
            id_column=id_column,
        )
    elif kind == "multiclass":
        settings = _settings("multiclass", [single], classes, id_column=id_column)
    else:  # a one-hot (or probability) column per class, in the sample's own order
        cls = [f"c{i}" for i in range(len(classes))]
        settings = _settings(
            "multiclass",
            draw(st.permutations(cls)),
            cls,
            draw(st.sampled_from(["labels", "probabilities"])),
            id_column=id_column,
        )
    k = len(settings.output_names)
    P = np.array(draw(st.lists(st.lists(st.floats(0, 1), min_size=k, max_size=k), min_size=n, max_size=n)))
    lo, hi = (-0.5, 0.5) if settings.task == "multiclass" else (0.0, 1.0)
    t = np.array(draw(st.lists(st.floats(lo, hi), min_size=k, max_size=k)))
    test_ids = draw(st.permutations(ids))
    columns = (
        [id_column, *draw(st.permutations(settings.label_columns))]
        if draw(st.booleans())
        else [id_column, *settings.label_columns]
    )
    sample = pd.DataFrame({c: pd.Series(ids, dtype="str") if c == id_column else "0" for c in columns})
    return settings, sample, list(test_ids), P, t, min_labels


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_case())
def test_built_submissions_validate_and_round_trip(case):
    settings, sample, test_ids, P, t, min_labels = case
    frame = build_submission(test_ids, P, settings, sample, t, min_labels)
    text = validate_submission(frame, sample, settings)  # raises on any problem
    assert list(frame.columns) == list(sample.columns)
    assert frame[settings.id_column].tolist() == sample[settings.id_column].tolist()

    string_columns = {c: str for c in frame.columns if pd.api.types.is_string_dtype(frame[c])}
    back = pd.read_csv(io.StringIO(text), dtype=string_columns, keep_default_na=False)
    pd.testing.assert_frame_equal(back, frame, check_exact=True)

    # each row holds what its own probabilities and thresholds give, wherever the row moved
    row_of = {v: i for i, v in enumerate(test_ids)}
    rows = [row_of[v] for v in frame[settings.id_column]]
    if settings.submission_format == "probabilities":
        got = frame[settings.label_columns].to_numpy(dtype=float)
        want = (
            P[rows]
            if settings.task == "binary"
            else P[rows][:, [settings.output_names.index(c) for c in settings.label_columns]]
        )
        assert np.array_equal(got, want)
        return
    labels = apply_thresholds(P, t, settings.task, min_labels)[rows]
    if settings.task == "multiclass" and len(settings.label_columns) == 1:
        want = [str(settings.classes[j]) for j in labels.argmax(axis=1)]
    elif settings.task == "binary":
        want = [str(settings.classes[j]) for j in labels[:, 0]]
    else:
        want = [labels[:, settings.output_names.index(c)].tolist() for c in settings.label_columns]
        got = [frame[c].tolist() for c in settings.label_columns]
        assert got == want
        return
    assert frame[settings.label_columns[0]].astype(str).tolist() == want


# ---- comp.evaluate -----------------------------------------------------------------------------


def test_score_frames_matches_the_metric_and_row_order_does_not_matter():
    key = _frame("id,joy,anger,fear\n1,1,0,0\n2,0,1,1\n3,1,1,0\n4,0,0,0\n")
    sub = _frame("id,joy,anger,fear\n4,1,0,0\n3,1,0,0\n2,0,1,1\n1,1,0,1\n")
    result = score_frames(sub, key, MULTILABEL)
    Y = np.array([[1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 0]])
    L = np.array([[1, 0, 1], [0, 1, 1], [1, 0, 0], [1, 0, 0]])
    assert result.score == pytest.approx(score("f1_macro", Y, L, "multilabel"))
    assert result.per_class["precision"].tolist() == pytest.approx([2 / 3, 1.0, 0.5])
    assert result.per_class["recall"].tolist() == [1.0, 0.5, 1.0] and result.rows == 4
    assert score_frames(sub, key, MULTILABEL, "jaccard_samples").score == pytest.approx(
        score("jaccard_samples", Y, L, "multilabel")
    )


def test_score_frames_probabilities_and_errors():
    settings = _settings("binary", ["target"], ["ham", "spam"], fmt="probabilities")
    key = _frame("id,target\na,spam\nb,ham\nc,spam\n")
    sub = _frame("id,target\na,0.9\nb,0.2\nc,0.4\n")
    result = score_frames(sub, key, settings, "roc_auc_macro")
    assert result.score == 1.0 and result.classes == ["ham", "spam"]
    assert result.note == "labels for the per-class table: probability >= 0.5"
    assert result.per_class["recall"].tolist() == [1.0, 0.5]
    assert score_frames(sub, key, settings, "f1").score == pytest.approx(2 / 3)
    with pytest.raises(ConfigError, match="metric 'log_loss' scores probabilities, but the submission holds labels"):
        score_frames(
            _frame("id,target\na,spam\nb,ham\nc,ham\n"),
            key,
            _settings("binary", ["target"], ["ham", "spam"]),
            "log_loss",
        )
    with pytest.raises(
        DataError, match=r"the submission is invalid: 'id' differs from the answer key's: 1 id\(s\) missing \(c\)"
    ):
        score_frames(_frame("id,target\na,0.9\nb,0.2\nd,0.4\n"), key, settings)


def test_settings_from_key():
    key = _frame("ID,label\n1,2\n2,0\n3,1\n")
    inferred = settings_from_key(key, _frame("ID,label\n1,2\n2,1\n3,1\n"))
    assert (inferred.task, inferred.classes, inferred.submission_format) == ("multiclass", [0, 1, 2], "labels")
    binary = settings_from_key(_frame("ID,y\n1,0\n2,1\n"), _frame("ID,y\n1,0.25\n2,0.5\n"))
    assert (binary.task, binary.classes, binary.submission_format) == ("binary", [0, 1], "probabilities")
    assert settings_from_key(SAMPLE, SAMPLE).task == "multilabel"
