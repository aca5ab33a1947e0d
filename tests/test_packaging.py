"""A non-editable install ships every package and data file of autofit/ (pyproject's [tool.setuptools] packages and
package-data), so the report's templates and static files are there when autofit is installed with pip."""

from __future__ import annotations

import fnmatch
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as a package (the test extra installs it there)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_file_of_autofit_is_declared_in_pyproject():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages, package_data = set(setuptools["packages"]), setuptools["package-data"]
    report = ROOT / "autofit" / "report"
    for path in (ROOT / "autofit").rglob("*"):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        package = ".".join(path.parent.relative_to(ROOT).parts)
        assert package in packages, f"{package} is not in pyproject's packages"
        if path.suffix != ".py":
            globs = package_data.get(package, [])
            assert any(fnmatch.fnmatch(path.name, g) for g in globs), f"{path} matches no package-data glob"
    assert {"page.html.j2", "macros.html.j2"} <= {p.name for p in (report / "templates").iterdir()}


def test_the_autofit_script_runs_the_program_entry():
    """The installed `autofit` runs cli.run (main, then the heap frozen for a quick exit), as `python -m autofit`
    does; tests/test_cli.py checks what run does."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"autofit": "autofit.cli:run"}
