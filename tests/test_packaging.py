"""The example model configs are package data: real files in the wheel and the sdist, no symlink."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "comp" / "configs").glob("*.yaml"))


def test_no_symlink_in_the_repository():
    links = []
    for folder, dirs, names in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("__pycache__", "work", "build", "dist")]
        links += [os.path.join(folder, n) for n in dirs + names if os.path.islink(os.path.join(folder, n))]
    assert links == []


def test_example_configs_are_the_package_folder():
    from comp.config import example_configs

    examples = example_configs()
    assert list(examples) == [p.name for p in EXAMPLES]
    assert {"tfidf.yaml", "nbsvm.yaml", "minilm-finetune.yaml", "roberta-base.yaml"} <= set(examples)
    assert all(examples[p.name] == p.read_text(encoding="utf-8") for p in EXAMPLES)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A wheel and an sdist built offline from a copy of the checkout (setuptools of this environment)."""
    pytest.importorskip("setuptools", minversion="77")
    tmp = tmp_path_factory.mktemp("build")
    source = tmp / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "comp", source / "comp", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp / "dist"
    script = textwrap.dedent(f"""
        from setuptools import build_meta
        build_meta.build_wheel({str(out)!r})
        build_meta.build_sdist({str(out)!r})
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=source, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return wheel, sdist


def test_the_wheel_holds_every_example_config(built):
    wheel, _ = built
    with zipfile.ZipFile(wheel) as archive:
        for path in EXAMPLES:
            assert archive.read(f"comp/configs/{path.name}") == path.read_bytes()
        assert sorted(n for n in archive.namelist() if n.startswith("comp/configs/")) == [
            f"comp/configs/{p.name}" for p in EXAMPLES
        ]


def test_the_sdist_holds_them_as_regular_files(built):
    _, sdist = built
    with tarfile.open(sdist) as archive:
        members = {m.name.split("/", 1)[1]: m for m in archive.getmembers() if "/comp/configs/" in m.name}
        assert sorted(members) == [f"comp/configs/{p.name}" for p in EXAMPLES]
        assert all(m.isfile() for m in members.values())
        assert (
            archive.extractfile(members["comp/configs/tfidf.yaml"]).read()
            == (REPO / "comp/configs/tfidf.yaml").read_bytes()
        )


def test_the_configs_load_from_the_zipped_wheel(built, tmp_path):
    """comp imported from the .whl itself (zipimport): importlib.resources reads the YAML out of the zip."""
    wheel, _ = built
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(wheel)!r})
        import yaml
        import comp
        from comp.config import example_configs
        from comp.models import build_model_config

        assert comp.__file__.startswith({str(wheel)!r}), comp.__file__
        examples = example_configs()
        for name, text in examples.items():
            config = build_model_config(yaml.safe_load(text), name)
            print(name, config.model)
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = dict(line.split() for line in done.stdout.splitlines())
    assert sorted(loaded) == [p.name for p in EXAMPLES]
    assert loaded["tfidf.yaml"] == "tfidf" and loaded["minilm-finetune.yaml"] == "transformer"
