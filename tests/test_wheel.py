"""The wheel works without the checkout: `python -m build --wheel`, installed into a fresh venv.

Offline throughout: the wheel is built with `--no-isolation` (the setuptools of this venv, no
download) from a copy of the sources, and installed with `pip --no-deps --no-index`. The fresh
venv sees the dependencies already installed here through a .pth file naming this venv's
site-packages directories; a path line in a .pth is not itself scanned for .pth files, so the
editable install of the checkout (registered by `__editable__*.pth` there) stays invisible,
and the tests check that `kb` and `reference_impl` are imported from the wheel. `kd` then
builds, validates and queries the store in a directory outside the checkout, with no KD_*
variable set: the ontology comes from the package data, the store goes into ./data.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ONTOLOGY = sorted(p.name for p in (REPO / "ontology").glob("*.ttl"))
# What the wheel is built from: the files at the top of the checkout (pyproject.toml, setup.py,
# README.md, ...) and these directories; nothing else of the checkout (data, results, site) goes in.
SOURCE_DIRS = ("kb", "reference_impl", "ontology")

pytestmark = pytest.mark.slow


def _run(args: list[str | Path], *, cwd: Path | None = None, env: dict[str, str] | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{args} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def _clean_env() -> dict[str, str]:
    """This process's environment without KD_* settings or anything that points Python elsewhere."""
    drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("KD_") and k not in drop}
    env["PIP_NO_INDEX"] = "1"  # nothing may be downloaded
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for entry in REPO.iterdir():
        if entry.is_file():
            shutil.copy2(entry, source / entry.name)
    for name in SOURCE_DIRS:
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist, source], env=_clean_env())
    wheels = list(dist.glob("kdkb-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the wheel installed in it; the dependencies are this venv's."""
    directory = tmp_path_factory.mktemp("venv")
    env = _clean_env()
    _run([sys.executable, "-m", "venv", "--without-pip", directory], env=env)
    python = directory / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
          "--disable-pip-version-check", "--quiet", wheel], env=env)
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                        env=env).stdout.strip())
    # Written after the install, so that pip never saw the checkout's own kdkb (editable) here.
    dependencies = [d for d in dict.fromkeys(site.getsitepackages()) if Path(d).is_dir()]
    (purelib / "_kdkb_test_dependencies.pth").write_text("".join(f"{d}\n" for d in dependencies))
    return directory


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory outside the checkout, as a user's would be."""
    directory = tmp_path_factory.mktemp("elsewhere")
    assert not directory.resolve().is_relative_to(REPO)
    return directory


def test_the_wheel_holds_the_packages_the_ontology_and_the_kd_command(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert ONTOLOGY and "shapes.ttl" in ONTOLOGY
    assert {f"kb/_ontology/{name}" for name in ONTOLOGY} <= names
    packages = [p.parent.relative_to(REPO).as_posix() for top in ("kb", "reference_impl")
                for p in (REPO / top).rglob("__init__.py")]
    missing = [p for p in packages if f"{p}/__init__.py" not in names]
    assert not missing, f"packages missing from the wheel: {missing}"
    info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "kd = kb.cli:main" in zipfile.ZipFile(wheel).read(info).decode()
    # Only the packages: no tests, templates, results or data of the checkout.
    tops = {n.split("/", 1)[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"kb", "reference_impl"}, tops


def test_imports_come_from_the_wheel_not_the_checkout(venv: Path, workdir: Path):
    script = ("import json, kb, reference_impl, kb.config as c; "
              "print(json.dumps({'kb': kb.__file__, 'reference_impl': reference_impl.__file__, "
              "'in_checkout': c.IN_CHECKOUT, 'paths': {k: str(v) for k, v in vars(c.Paths.from_env()).items()}}))")
    out = json.loads(_run([venv / "bin" / "python", "-c", script], cwd=workdir, env=_clean_env()).stdout)
    site_packages = next((venv / "lib").glob("python3*/site-packages")).resolve()
    for module in ("kb", "reference_impl"):
        assert Path(out[module]).resolve().is_relative_to(site_packages), out
    assert out["in_checkout"] is False
    assert out["paths"] == {
        "root": str(workdir.resolve()),
        "ontology_dir": str(site_packages / "kb" / "_ontology"),
        "results_dir": str(workdir.resolve() / "results"),
        "data_dir": str(workdir.resolve() / "data"),
    }


def test_kd_builds_validates_and_queries_outside_the_checkout(venv: Path, workdir: Path):
    kd, env = venv / "bin" / "kd", _clean_env()
    assert "kd build" in _run([kd, "--help"], cwd=workdir, env=env).stdout
    built = _run([kd, "build"], cwd=workdir, env=env).stdout
    assert f"from {len(ONTOLOGY)} files" in built, built
    assert (workdir / "data" / "current" / "manifest.json").is_file()
    assert "conforms" in _run([kd, "validate"], cwd=workdir, env=env).stdout  # shapes.ttl from the package

    count = _run([kd, "query", "--format", "csv", "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }"],
                 cwd=workdir, env=env).stdout.split()
    assert count[0] == "n" and int(count[1]) > 1000, count
    label = _run([kd, "query", "--format", "csv",
                  'SELECT ?label WHERE { kd:KnowledgeDistillation skos:prefLabel ?label FILTER(lang(?label) = "en") }'],
                 cwd=workdir, env=env).stdout.splitlines()
    assert label[:2] == ["label", "Knowledge Distillation"], label


def test_the_public_api_runs_from_the_wheel(venv: Path, workdir: Path):
    """A user's script outside the checkout: distil with the installed package."""
    script = ("import torch, reference_impl; from torch import nn; from reference_impl import distill, losses; "
              "torch.manual_seed(0); x, y = torch.randn(64, 6), torch.randint(0, 3, (64,)); "
              "t = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3)); "
              "s = nn.Linear(6, 3); r = distill(t, s, (x, y), epochs=1, validation=(x, y)); "
              "assert r.student is s and 0 <= r.metrics['validation_accuracy'] <= 1; "
              "assert callable(losses.soft_target_loss); print(reference_impl.__file__)")
    out = _run([venv / "bin" / "python", "-c", script], cwd=workdir, env=_clean_env()).stdout.strip()
    assert Path(out).resolve().is_relative_to(next((venv / "lib").glob("python3*/site-packages")).resolve())
