"""Shared pytest fixtures."""

from __future__ import annotations

import pytest

try:  # tests/ may or may not become a package
    from tests.fake_kaggle import FakeKaggle
except ImportError:
    from fake_kaggle import FakeKaggle


@pytest.fixture
def fake_kaggle(tmp_path, monkeypatch):
    """A running FakeKaggle server (API in tests/fake_kaggle.py) with the real client pointed at it.

    Isolates every way the kaggle client finds credentials: HOME is an empty temp folder (no
    ~/.kaggle/kaggle.json, access_token or credentials.json), KAGGLE_CONFIG_DIR an empty temp folder,
    KAGGLE_API_TOKEN unset, and KAGGLE_USERNAME / KAGGLE_KEY are the server's. Proxy variables point at
    the server (see FakeKaggle.env), so subprocesses that inherit os.environ use it too.
    """
    home = tmp_path / "kaggle-home"
    config = tmp_path / "kaggle-config"
    home.mkdir()
    config.mkdir()
    for name in (
        "KAGGLE_API_TOKEN",
        "KAGGLE_USERNAME",
        "KAGGLE_KEY",
        "KAGGLE_KERNEL_RUN_TYPE",
        "KAGGLE_DATA_PROXY_URL",
        "XDG_CONFIG_HOME",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
        "VERBOSE",
        "VERBOSE_OUTPUT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config))
    server = FakeKaggle().start()
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    yield server
    server.stop()
