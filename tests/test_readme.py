"""The README tells the truth: its settings, its defaults and its SPARQL examples."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from kb.cli import main

from .server_harness import running_server

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def settings_table() -> dict[str, str]:
    section = README[README.index("## Settings"):]
    return {m.group(1): m.group(2) for m in re.finditer(r"^\| `(KD_[A-Z_]+)` \| ([^|]+) \|", section, re.M)}


def test_every_setting_the_code_reads_is_in_the_table():
    sources = [*REPO.glob("kb/**/*.py"), *REPO.glob("reference_impl/**/*.py"), REPO / "Makefile"]
    used = {name for path in sources for name in re.findall(r"(?<![A-Za-z0-9_])KD_[A-Z_]+", path.read_text())}
    assert used and used <= set(settings_table()), used - set(settings_table())


@pytest.mark.parametrize("variable, field, option", [
    ("KD_HOST", "host", "--host"), ("KD_PORT", "port", "--port"),
    ("KD_QUERY_TIMEOUT", "query_timeout", "--timeout"), ("KD_WORKERS", "workers", "--workers"),
])
def test_defaults_agree_between_readme_help_and_code(monkeypatch, variable, field, option):
    from kb.server.settings import Settings

    for name in settings_table():
        monkeypatch.delenv(name, raising=False)
    default = getattr(Settings(), field)
    shown = f"{default:g}" if isinstance(default, float) else str(default)
    assert settings_table()[variable].strip().strip("`") == shown
    help_text = " ".join(CliRunner().invoke(main, ["serve", "--help"]).output.split())
    assert re.search(rf"{re.escape(option)} \S+ .*?\(default {re.escape(shown)}, \${variable}\)", help_text)


def test_data_dir_help_names_its_default_and_variable():
    help_text = " ".join(CliRunner().invoke(main, ["query", "--help"]).output.split())
    assert "default: ./data in the project, or $KD_DATA_DIR" in help_text


def readme_queries() -> list[str]:
    return re.findall(r"```sparql\n(.*?)```", README, re.S)


def test_the_readme_has_sparql_examples():
    assert len(readme_queries()) >= 6


@pytest.fixture(scope="module")
def endpoint(built, paths):
    with running_server(paths.data_dir, KD_WORKERS="1") as (url, _):
        yield url + "/sparql"


@pytest.mark.parametrize("index", range(len(readme_queries())))
def test_readme_examples_paste_into_the_endpoint_as_they_are(endpoint, index):
    query = readme_queries()[index]
    response = httpx.post(endpoint, data={"query": query}, timeout=30)
    assert response.status_code == 200, response.text
    if "SELECT" in query:
        assert response.json()["results"]["bindings"], "the example answers nothing"
