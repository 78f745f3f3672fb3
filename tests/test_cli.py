"""The command line: thin commands, one error path (a message, exit 1, no traceback), lazy imports."""

import subprocess
import sys

import pytest

from tests.helpers import multilabel_source

HEAVY = (
    "torch",
    "transformers",
    "peft",
    "bitsandbytes",
    "datasets",
    "kaggle",
    "kagglesdk",
    "matplotlib",
    "optuna",
    "pandas",
    "sklearn",
)


def comp(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "comp", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


COMMANDS = (
    "init",
    "fetch",
    "info",
    "folds",
    "train",
    "tune",
    "runs",
    "thresholds",
    "ensemble",
    "submit",
    "lb",
    "evaluate",
    "report",
    "compare",
    "predict",
    "demo",
)


def test_help_imports_nothing_heavy():
    # `python -m comp --help` and every `comp COMMAND --help`, in one process: `comp --help` stays fast
    # because nothing heavy is imported before a command runs
    code = (
        "import runpy, sys\n"
        f"for argv in [['--help'], *[[c, '--help'] for c in {COMMANDS!r}]]:\n"
        "    sys.argv = ['comp', *argv]\n"
        "    try:\n        runpy.run_module('comp', run_name='__main__', alter_sys=True)\n"
        "    except SystemExit as exc:\n        assert exc.code in (0, None), (argv, exc.code)\n"
        f"print('heavy=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "Commands" in result.stdout and "--workspace" in result.stdout
    assert result.stdout.count(" Usage: ") == len(COMMANDS) + 1
    assert result.stdout.strip().splitlines()[-1] == "heavy="


def test_the_workspace_option_lives_on_the_context_not_in_a_module(tmp_path, monkeypatch, capsys):
    import comp.cli
    from comp import console
    from comp.cli.context import Application
    from comp.workspace import Workspace

    source = tmp_path / "download"
    multilabel_source(source)

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["comp", *map(str, args)])
        try:
            comp.cli.main()
        except SystemExit as exc:
            assert exc.code in (0, None), capsys.readouterr().err
        return capsys.readouterr().out

    monkeypatch.setattr(console.out, "_width", 200)
    for slug in ("alpha", "beta"):
        run("init", slug, tmp_path / slug)
        run("--workspace", tmp_path / slug, "fetch", "--from", source)
    # one process, two workspaces, in either order: each command sees only the option it was given
    for slug in ("beta", "alpha", "beta"):
        assert f"competition        {slug}" in run("-w", tmp_path / slug, "info")
    monkeypatch.chdir(tmp_path / "alpha")
    assert "competition        alpha" in run("info")  # no -w: the nearest comp.yaml, not the last -w
    modules = [m for name, m in sys.modules.items() if name == "comp.cli" or name.startswith("comp.cli.")]
    held = [(m.__name__, k) for m in modules for k, v in vars(m).items() if isinstance(v, Application | Workspace)]
    assert held == []


def test_init_fetch_info_folds(tmp_path):
    source = tmp_path / "download"
    multilabel_source(source)
    assert comp("init", "my-comp", tmp_path / "ws").returncode == 0
    ws = tmp_path / "ws"
    assert (ws / "comp.yaml").is_file() and (ws / "configs" / "tfidf.yaml").is_file()
    fetched = comp("fetch", "--from", source, cwd=ws)
    assert fetched.returncode == 0, fetched.stderr
    assert "task               multilabel" in fetched.stdout
    info = comp("info", cwd=ws)
    assert info.returncode == 0 and "fear" in info.stdout and "prevalence" in info.stdout
    folds = comp("--workspace", ws, "folds", "--folds", "4")
    assert folds.returncode == 0 and (ws / "data" / "folds-k4-s42.csv").is_file()
    assert "max prevalence deviation" in folds.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["info"], "error: no comp.yaml in"),
        (["train", "missing.yaml"], "does not exist"),
    ],
)
def test_errors_are_one_line_without_traceback(tmp_path, args, message):
    result = comp(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_data_error_through_cli(tmp_path):
    source = tmp_path / "download"
    multilabel_source(source)
    (source / "train.csv").write_bytes(b"\xff\xfe not utf8")
    comp("init", "x", tmp_path / "ws")
    result = comp("fetch", "--from", source, cwd=tmp_path / "ws")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "is not UTF-8 text" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_thresholds_table_is_sklearn_f1_at_the_written_thresholds(tmp_path, monkeypatch, capsys):
    import json

    from sklearn.metrics import f1_score

    import comp.cli
    from comp import console
    from comp.data import load_competition
    from comp.runs import load_run
    from comp.train import train
    from tests.helpers import make_workspace

    ws = make_workspace(tmp_path, train_rows=120, test_rows=40)
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3)
    monkeypatch.setattr(sys, "argv", ["comp", "-w", str(ws.root), "thresholds", "tfidf"])
    monkeypatch.setattr(console.out, "_width", 200)
    with pytest.raises(SystemExit) as done:
        comp.cli.main()
    assert done.value.code in (0, None)
    out = capsys.readouterr().out
    data, truth = load_run(ws, "tfidf"), load_competition(ws)
    written = json.loads(ws.run("tfidf").thresholds.read_text())
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert [str(i) for i in data.ids] == [str(i) for i in truth.train_ids]
    for j, name in enumerate(data.classes):
        t = written["thresholds"][str(name)]
        _, support, shown_t, at_half, tuned = rows[str(name)][:5]
        assert int(support) == int(truth.Y[:, j].sum()) and float(shown_t) == pytest.approx(t, abs=5e-4)
        assert float(at_half) == pytest.approx(
            f1_score(truth.Y[:, j], data.oof[:, j] >= 0.5, zero_division=0), abs=5e-5
        )
        assert float(tuned) == pytest.approx(f1_score(truth.Y[:, j], data.oof[:, j] >= t, zero_division=0), abs=5e-5)
