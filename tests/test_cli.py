"""The command line: thin commands, one error path (a message, exit 1, no traceback), lazy imports."""

import subprocess
import sys

import pytest

from tests.helpers import multilabel_source

HEAVY = ("torch", "transformers", "kaggle", "sklearn", "pandas", "datasets", "peft", "matplotlib")


def comp(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "comp", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_help_imports_nothing_heavy():
    code = ("import sys\nfrom comp.cli import app\nimport typer.main\n"
            "try:\n    app(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
            f"print('heavy=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "Commands" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "heavy="


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
