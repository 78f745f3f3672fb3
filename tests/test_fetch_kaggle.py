"""`comp fetch SLUG` through the real kaggle client, against the local fake Kaggle server."""

import subprocess
import sys

import pytest

from comp.data import load_competition
from comp.errors import KaggleError
from comp.fetch import fetch_kaggle
from comp.workspace import init_workspace
from tests.helpers import multilabel_source

SLUG = "emotion-spring"


@pytest.fixture
def competition_files(tmp_path):
    source = tmp_path / "download"
    multilabel_source(source)
    return {name: (source / name).read_bytes() for name in ("train.csv", "test.csv", "sample_submission.csv")}


def test_fetch_downloads_unzips_and_infers(fake_kaggle, competition_files, tmp_path):
    fake_kaggle.add_competition(SLUG, files=competition_files)
    ws = init_workspace(SLUG, tmp_path / "ws", {})
    result = fetch_kaggle(ws, None)
    assert sorted(result.files) == ["data/sample_submission.csv", "data/test.csv", "data/train.csv"]
    assert (ws.data_dir / "train.csv").read_bytes() == competition_files["train.csv"]
    settings = ws.load_settings()
    assert settings.task == "multilabel" and settings.id_column == "ID"
    assert load_competition(ws).Y.shape == (300, 6)
    assert not list(ws.root.glob(".download-*")) and not list(ws.data_dir.glob(".fetch-*"))


def test_fetch_through_the_command_line(fake_kaggle, competition_files, tmp_path):
    fake_kaggle.add_competition(SLUG, files=competition_files)
    init_workspace("placeholder", tmp_path / "ws", {})
    result = subprocess.run(
        [sys.executable, "-m", "comp", "--workspace", str(tmp_path / "ws"), "fetch", SLUG],
        capture_output=True,
        text=True,
        env=fake_kaggle.env(),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "inferred into comp.yaml" in result.stdout
    assert f"competition: {SLUG}" in (tmp_path / "ws" / "comp.yaml").read_text()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda s: s.fail_next("DownloadDataFiles", 401), r"rejected .*create a new token"),
        (
            lambda s: s.competitions[SLUG].__setattr__("rules_accepted", False),
            rf"https://www.kaggle.com/competitions/{SLUG}/rules",
        ),
        (lambda s: s.fail_next("DownloadDataFiles", 404), rf"no competition '{SLUG}'|{SLUG}.*not found|check the slug"),
        (lambda s: s.__setattr__("rate_limited", True), r"rate.?limit|too many requests.*retry later"),
    ],
    ids=["401", "403-rules", "404", "429"],
)
def test_fetch_errors(fake_kaggle, competition_files, tmp_path, setup, message):
    fake_kaggle.add_competition(SLUG, files=competition_files)
    setup(fake_kaggle)
    ws = init_workspace(SLUG, tmp_path / "ws", {})
    with pytest.raises(KaggleError, match=message):
        fetch_kaggle(ws, None)
    assert sorted(p.name for p in ws.data_dir.iterdir()) == []


def test_fetch_without_credentials(fake_kaggle, competition_files, tmp_path, monkeypatch):
    fake_kaggle.add_competition(SLUG, files=competition_files)
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    ws = init_workspace(SLUG, tmp_path / "ws", {})
    with pytest.raises(KaggleError, match=r"no Kaggle credentials: put kaggle.json .* in ~/.kaggle/"):
        fetch_kaggle(ws, None)


def test_fetch_network_failure(fake_kaggle, competition_files, tmp_path):
    fake_kaggle.add_competition(SLUG, files=competition_files)
    fake_kaggle.stop()
    ws = init_workspace(SLUG, tmp_path / "ws", {})
    with pytest.raises(KaggleError, match=r"could not reach Kaggle"):
        fetch_kaggle(ws, None)


@pytest.mark.parametrize("code", [403, 404])
def test_a_failed_fetch_of_another_slug_leaves_comp_yaml_alone(fake_kaggle, competition_files, tmp_path, code):
    fake_kaggle.add_competition(SLUG, files=competition_files)
    fake_kaggle.add_competition("other-comp", files=competition_files, rules_accepted=code != 403)
    ws = init_workspace(SLUG, tmp_path / "ws", {})
    before = ws.settings_path.read_text()
    if code == 404:
        fake_kaggle.fail_next("DownloadDataFiles", 404)
    with pytest.raises(KaggleError, match=rf"\({code}\)"):
        fetch_kaggle(ws, "other-comp")
    assert ws.settings_path.read_text() == before  # today: competition: other-comp, with no data for it
    result = fetch_kaggle(ws, "other-comp") if code == 404 else None
    if result is not None:
        assert ws.load_settings().competition == "other-comp"  # a fetch that works takes the new slug


def test_errors_about_a_download_name_the_file_not_the_staging_folder(fake_kaggle, competition_files, tmp_path):
    from comp.errors import DataError

    fake_kaggle.add_competition(SLUG, files={**competition_files, "train.csv": b"\xff\xfe not utf8"})
    ws = init_workspace(SLUG, tmp_path / "ws", {})
    with pytest.raises(DataError) as error:
        fetch_kaggle(ws, None)
    message = str(error.value)
    assert message.startswith(f"train.csv in the Kaggle download of '{SLUG}' is not UTF-8 text")
    assert ".fetch-" not in message and ".download-" not in message
