"""mmtrack as a user installs it: the wheel holds every module and the preset studies; installed into a fresh
venv (its dependencies from this one, nothing downloaded) it runs from an empty directory, keeps its store in the
per-user place and writes nothing into the working directory or the repository. Also: where the local store
goes, the preset list, `study init` and `info`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import run_cli

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow  # builds a wheel and a venv


def _snapshot(root: Path) -> dict[str, float]:
    """Every file under `root` (not in hidden folders such as .git and .venv) with its modification time."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
        for f in filenames:
            p = Path(dirpath, f)
            out[str(p.relative_to(root))] = p.stat().st_mtime
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel built from this working tree installed in it; its own site-packages come
    first, this venv's (the dependencies) after, through a .pth line."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"  # a copy: an in-tree build would write build/ and *.egg-info into the repository
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("mmtrack", "studies"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", src], check=True)
    (wheel,) = (tmp / "dist").glob("mmtrack-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    subprocess.run([*pip, "--python", venv / "bin" / "python", "install", "--no-deps", "--no-index", wheel], check=True)
    (site,) = (venv / "lib").glob("python3*/site-packages")
    (site / "deps-from-dev-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def test_the_wheel_carries_every_module_and_the_presets(installed):
    (wheel,) = installed.parent.glob("dist/mmtrack-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {str(p.relative_to(REPO)) for p in (REPO / "mmtrack").rglob("*.py")}
    assert modules - names == set()
    presets = {f"mmtrack/studies/{p.name}" for p in (REPO / "studies").glob("*.yaml")}
    assert {"mmtrack/studies/digits-skewed.yaml", "mmtrack/studies/utkface.yaml"} <= presets <= names


def test_installed_mmtrack_runs_from_an_empty_directory(installed, tmp_path):
    home, cwd = tmp_path / "home", tmp_path / "empty"
    home.mkdir()
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MMTRACK_", "XDG_", "PYTHON"))}
    env.update(HOME=str(home), MMTRACK_DEVICE="cpu", MMTRACK_THREADS="1", COLUMNS="250", PYTHONWARNINGS="ignore")
    repo_before = _snapshot(REPO)

    def mmtrack(*args: str) -> str:
        proc = subprocess.run(
            [installed / "bin" / "mmtrack", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    where = subprocess.run(
        [installed / "bin" / "python", "-c", "import mmtrack; print(mmtrack.__file__)"],
        cwd=cwd, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert where.startswith(str(installed)), where  # the wheel's copy, not the checkout
    assert "45 configurations" in mmtrack("sweep", "digits-skewed", "--dry-run")
    assert "digits-skewed" in mmtrack("study", "list")
    tiny = ["--width", "0.0625", "--epochs", "1", "--augment", "none", "--batch-size", "256", "--intervention", "acc"]
    mmtrack("train", "--dataset", "digits-skewed", *tiny)
    sheet = mmtrack("sheet", "--experiment", "digits-skewed")
    assert "Δmax" in sheet
    store = home / ".local" / "share" / "mmtrack"
    info = mmtrack("info")
    assert f"sqlite:///{store}/mlflow.db" in info and "per-user default" in info
    assert (store / "mlflow.db").is_file() and any((store / "artifacts").rglob("model.safetensors"))
    assert list(cwd.iterdir()) == []  # nothing written where the commands ran
    assert _snapshot(REPO) == repo_before  # nor into the checkout


# ------------------------------------------------------------------------------------- where things go


def test_local_store_follows_env_then_project_setting_then_per_user_place(tmp_path, monkeypatch):
    from mmtrack import settings
    from mmtrack.errors import MMTrackError

    monkeypatch.delenv("MMTRACK_TRACKING_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    monkeypatch.chdir(project / "sub")
    assert settings.tracking_dir_origin() == (tmp_path / "home/.local/share/mmtrack", "the per-user default")
    (project / "pyproject.toml").write_text('[project]\nname = "x"\n')  # no [tool.mmtrack]: not ours
    assert settings.tracking_dir() == tmp_path / "home/.local/share/mmtrack"
    (project / "pyproject.toml").write_text('[tool.mmtrack]\ntracking-dir = "runs"\n')
    assert settings.tracking_dir_origin() == (project / "runs", f"{project / 'pyproject.toml'} [tool.mmtrack]")
    assert settings.cache_dir() == project / "runs" / "cache"
    monkeypatch.setenv("MMTRACK_TRACKING_DIR", str(tmp_path / "env"))
    assert settings.tracking_dir() == tmp_path / "env"
    monkeypatch.delenv("MMTRACK_TRACKING_DIR")
    (project / "pyproject.toml").write_text("[tool.mmtrack]\ntracking-dir = 3\n")
    with pytest.raises(MMTrackError, match=r"tracking-dir must be a path"):
        settings.tracking_dir()


def test_the_checkout_keeps_its_store_in_tracking(monkeypatch):
    from mmtrack import settings

    monkeypatch.delenv("MMTRACK_TRACKING_DIR", raising=False)
    monkeypatch.chdir(REPO)
    assert settings.tracking_dir() == REPO / "tracking"  # make demo, mlflow run . and make server agree


def test_info_says_where_things_go(capsys, monkeypatch, tracking_dir):
    r = run_cli(capsys, monkeypatch, "info")
    assert r.code == 0, r.err
    assert r.out.startswith("mmtrack ")
    for key in ("tracking URI", "local store", "cache", "device", "threads", "torch", "MLflow", "Optuna", "ART"):
        assert f"  {key}" in r.out
    assert f"{tracking_dir}  (" in r.out and "$MMTRACK_TRACKING_DIR" in r.out


# ------------------------------------------------------------------------------------- presets and init


def test_presets_are_listed_and_found_from_anywhere(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    r = run_cli(capsys, monkeypatch, "studies")
    assert r.code == 0
    rows = {line.split()[0]: line for line in r.out.splitlines() if line.strip()}
    assert "ofat" in rows["digits-skewed"] and " 45 " in rows["digits-skewed"]
    assert " 35 " in rows["cifar10-skewed"] and "study init" in rows["own-data-example"]
    r = run_cli(capsys, monkeypatch, "sweep", "digits-skewed", "--dry-run")
    assert r.code == 0 and "45 configurations" in r.out
    r = run_cli(capsys, monkeypatch, "sweep", "digits-skewd", "--dry-run")
    assert r.code == 2
    assert r.err.strip() == (
        "error: study file digits-skewd not found; presets: cifar10-skewed, digits-recipe-arch, digits-seed-sources, "
        "digits-skewed, own-data-example, utkface (`mmtrack study list`), or write your own with "
        "`mmtrack study init NAME`"
    )


def test_own_studies_folder_is_looked_up_before_the_presets(capsys, monkeypatch, tmp_path):
    (tmp_path / "studies").mkdir()
    text = (REPO / "studies" / "digits-skewed.yaml").read_text().replace("seeds: [0, 1, 2, 3, 4]", "seeds: [7]")
    assert "seeds: [7]" in text
    (tmp_path / "studies" / "digits-skewed.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    r = run_cli(capsys, monkeypatch, "sweep", "digits-skewed", "--dry-run")
    assert r.code == 0 and "9 configurations" in r.out


def test_study_init_writes_a_study_for_your_folder_and_never_overwrites(capsys, monkeypatch, tmp_path):
    from PIL import Image

    for split, n in (("train", 6), ("test", 3)):
        for c, colour in (("cat", (200, 30, 30)), ("dog", (30, 30, 200))):
            (tmp_path / "pets" / split / c).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (12, 12), (colour[0], colour[1] + 10 * i, colour[2])).save(
                    tmp_path / "pets" / split / c / f"{i}.png"
                )
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    r = run_cli(capsys, monkeypatch, "study", "init", "pets-audit", "--dataset", "../pets")
    assert r.code == 0, r.err
    text = (work / "pets-audit.yaml").read_text()
    assert "name: pets-audit" in text and "  images: ../pets" in text and "\n  # groups:" in text
    r = run_cli(capsys, monkeypatch, "sweep", "pets-audit.yaml", "--dry-run")
    assert r.code == 0 and "pets-audit: 30 configurations" in r.out, r.err
    r = run_cli(capsys, monkeypatch, "datasets", "show", "pets-audit.yaml")
    assert r.code == 0 and "acc " in r.out, r.err
    (work / "pets-audit.yaml").write_text("mine")
    r = run_cli(capsys, monkeypatch, "study", "init", "pets-audit")
    assert r.code == 2 and "pets-audit.yaml exists" in r.err
    assert (work / "pets-audit.yaml").read_text() == "mine"
    r = run_cli(capsys, monkeypatch, "study", "init", "digits-skewed")
    assert r.code == 2 and "built-in dataset's name" in r.err
    r = run_cli(capsys, monkeypatch, "study", "init", "x", "--dataset", "nowhere")
    assert r.code == 2 and "--dataset nowhere not found" in r.err
    assert not (work / "x.yaml").exists()
