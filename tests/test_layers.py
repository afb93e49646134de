"""The arrows between modules point down: no report module imports a stage, no stage imports
another's modules, the lower modules import no stage, and no module imports another's private
names. Read from the source (every import, also those inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "orbitct_app"
MODULES = sorted(PACKAGE.rglob("*.py"))
STAGES = ("orbitct_app.anonymize", "orbitct_app.extract", "orbitct_app.deid", "orbitct_app.stages")
LOWER = ("atomic", "discover", "errors", "interrupt", "locks", "memory", "paths", "pictures", "safe_text", "threads")
"""Modules every stage may use, which use no stage (options.py reads the key file with deid.keys)."""


def imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every ``from module import name``, and (module, '') of every ``import``."""
    found: list[tuple[str, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, "") for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.extend((node.module, alias.name) for alias in node.names)
    return found


def modules_imported(path: Path) -> set[str]:
    return {f"{module}.{name}" if name else module for module, name in imports(path)} | {m for m, _ in imports(path)}


def name(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


@pytest.mark.parametrize("module", sorted((PACKAGE / "report").glob("*.py")), ids=name)
def test_no_report_module_imports_a_stage(module: Path) -> None:
    assert not [m for m in modules_imported(module) if m.startswith(STAGES)]


@pytest.mark.parametrize("module", [PACKAGE / f"{n}.py" for n in LOWER], ids=name)
def test_the_lower_modules_import_no_stage_and_no_report(module: Path) -> None:
    upward = [m for m in modules_imported(module) if m.startswith((*STAGES, "orbitct_app.report"))]
    assert not upward


@pytest.mark.parametrize("module", sorted((PACKAGE / "dicomio").glob("*.py")), ids=name)
def test_the_byte_layer_imports_nothing_above_it(module: Path) -> None:
    """dicomio/ reads and writes the bytes for discovery and de-identification: it imports
    neither, nor a stage or a report."""
    above = (*STAGES, "orbitct_app.report", "orbitct_app.discover", "orbitct_app.synthetic")
    assert not [m for m in modules_imported(module) if m.startswith(above)]


@pytest.mark.parametrize("module", sorted((PACKAGE / "deid").glob("*.py")), ids=name)
def test_deid_imports_no_stage_and_no_discovery(module: Path) -> None:
    above = ("orbitct_app.anonymize", "orbitct_app.extract", "orbitct_app.stages", "orbitct_app.discover",
             "orbitct_app.report")
    assert not [m for m in modules_imported(module) if m.startswith(above)]


@pytest.mark.parametrize(("stage", "other"), [("extract", "orbitct_app.anonymize"), ("extract", "orbitct_app.deid"),
                                              ("anonymize", "orbitct_app.extract")])
def test_no_stage_imports_another(stage: str, other: str) -> None:
    for module in sorted((PACKAGE / stage).glob("*.py")):
        assert not [m for m in modules_imported(module) if m.startswith(other)], name(module)


def test_qc_pictures_do_not_import_the_resampling() -> None:
    assert "orbitct_app.extract.resample" not in modules_imported(PACKAGE / "extract" / "qc.py")


@pytest.mark.parametrize("module", MODULES, ids=name)
def test_no_module_imports_private_names_of_another(module: Path) -> None:
    private = [
        f"{m}.{n}" for m, n in imports(module)
        if m.startswith("orbitct_app") and n.startswith("_") and not n.startswith("__")
    ]
    assert not private


def test_options_is_only_the_options_record() -> None:
    """Listing exams is paths.py's, counting cores threads.py's: options.py defines no function."""
    tree = ast.parse((PACKAGE / "options.py").read_text(encoding="utf-8"))
    assert not [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]


@pytest.mark.parametrize("module", ["cli.py", "pipeline.py", "workers.py"])
def test_the_run_reaches_the_stages_only_through_the_registry(module: str) -> None:
    """stages.py is the one place that imports a stage's modules; the command line, the pipeline
    and the workers call it."""
    direct = [m for m in modules_imported(PACKAGE / module) if m.startswith(STAGES[:3])]
    assert not direct
    assert "orbitct_app.stages" in modules_imported(PACKAGE / module)
