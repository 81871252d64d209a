"""The documentation site, built once per test session from the `built` store.

The build runs in a subprocess, exactly as `kd site build` does it, so that the test can
also check that building the site never imports torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_BUILD = """
import json, sys
from pathlib import Path
import kb
from kb.sitegen import build_site
report = build_site(kb.open(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
print(json.dumps({"pages": report.pages, "markdown_pages": report.markdown_pages,
                  "concepts": report.concepts, "papers": report.papers, "seconds": report.seconds,
                  "torch_imported": "torch" in sys.modules}))
"""


@dataclass(frozen=True)
class BuiltSite:
    out: Path
    html: Path
    docs: Path
    report: dict


_CACHE: dict[str, BuiltSite] = {}


def build_once(data_dir: Path, out: Path) -> BuiltSite:
    """Build the site for this data directory the first time it is asked for; reuse it after."""
    key = str(data_dir)
    if key not in _CACHE:
        done = subprocess.run([sys.executable, "-c", _BUILD, str(data_dir), str(out), str(REPO)],
                              capture_output=True, text=True, timeout=300, cwd=REPO)
        assert done.returncode == 0, f"site build failed:\n{done.stdout}\n{done.stderr}"
        report = json.loads(done.stdout.strip().splitlines()[-1])
        _CACHE[key] = BuiltSite(out, out / "html", out / "docs", report)
    return _CACHE[key]
