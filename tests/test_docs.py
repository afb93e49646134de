"""The documentation (README.md and docs/) against itself and the code.

Every relative link and anchor resolves (anchors as GitHub makes them from headings, or explicit
``<a id=...>``); every command-line option is in the options table of docs/usage.md with its
default and choices; the exit codes, the tables' columns, the limits and the layout of the code
listed there are the code's. Static and fast: nothing is run.
"""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

import click
import pytest
from packaging.requirements import Requirement

from orbitct_app.cli import command
from orbitct_app.errors import ExitCode
from orbitct_app.report import tables

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
README_MAX_LINES = 175
"""The README stays short: what it is, the two commands, the stages, exit codes, links."""

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_EXPLICIT_ANCHOR = re.compile(r"""<a\s+(?:id|name)=["']([^"']+)["']""")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def prose_lines(text: str) -> list[str]:
    """The lines of a Markdown text outside fenced code blocks (code blocks become empty lines)."""
    lines = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            lines.append("")
            continue
        lines.append("" if fenced else line)
    return lines


def slug(heading: str) -> str:
    """The anchor GitHub makes of a heading: its text in lower case, without punctuation other
    than ``-`` and ``_``, spaces as ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor of a Markdown text: its headings' slugs (a repeated one gets ``-1``, ``-2``
    ...) and explicit ``<a id=...>`` anchors."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose_lines(text):
        found.update(_EXPLICIT_ANCHOR.findall(line))
        match = _HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(page: Path) -> list[str]:
    """The relative links of a Markdown page whose file or anchor does not exist."""
    problems = []
    for number, line in enumerate(prose_lines(page.read_text(encoding="utf-8")), 1):
        for target in _LINK.findall(_CODE_SPAN.sub("code", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
                continue
            path_part, _, fragment = target.partition("#")
            path = (page.parent / path_part).resolve() if path_part else page
            where = f"{page.relative_to(REPO)}:{number}: {target}"
            if not path.exists():
                problems.append(f"{where}: no such file")
            elif fragment and path.suffix == ".md" and fragment not in anchors(path.read_text(encoding="utf-8")):
                problems.append(f"{where}: no such anchor in {path.name}")
            elif fragment and path.suffix != ".md":
                problems.append(f"{where}: an anchor into a file that is not Markdown")
    return problems


def table_rows(text: str, header: str) -> list[list[str]]:
    """The body rows of the Markdown table whose header row starts with ``header``, as cells."""
    lines = prose_lines(text)
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        rows.append([cell.strip().replace("\\|", "|") for cell in cells])
    return rows


def section(text: str, heading: str) -> str:
    """The text of a section, from its heading to the next heading of the same or a higher level."""
    lines = text.splitlines()
    start = lines.index(heading)
    level = len(heading) - len(heading.lstrip("#"))
    end = next(
        (i for i in range(start + 1, len(lines)) if re.match(rf"^#{{1,{level}}} ", lines[i])),
        len(lines),
    )
    return "\n".join(lines[start:end])


def read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


# --- links ----------------------------------------------------------------------------------------


def test_the_pages_exist() -> None:
    names = {page.name for page in DOCS.glob("*.md")}
    assert {
        "README.md", "usage.md", "deidentification.md", "extraction.md", "outputs-and-qc.md",
        "hostile-input.md", "containers.md", "hpc-slurm.md", "performance.md", "development.md",
    } <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    assert broken_links(page) == []


def test_every_page_is_linked_from_the_index_and_the_readme() -> None:
    index = read("README.md")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for page in DOCS.glob("*.md"):
        if page.name != "README.md":
            assert f"]({page.name}" in index, page.name
            assert f"](docs/{page.name}" in readme, page.name


def test_the_link_check_finds_what_is_broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker itself: a missing file, a missing anchor, a link in code that is not a link."""
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    (tmp_path / "other.md").write_text("# Other page\n\n## Exit codes (`--dry-run`)\n\n## Exit codes (`--dry-run`)\n")
    page = tmp_path / "page.md"
    page.write_text(
        '# Page\n\n<a id="the-key"></a>Text.\n\n'
        "[ok](other.md#exit-codes---dry-run) [ok](other.md#exit-codes---dry-run-1) [ok](#the-key) [ok](#page)\n"
        "[bad](missing.md) [bad](other.md#nowhere) [bad](#nowhere) `[not a link](missing.md)`\n"
        "```\n[not a link](missing.md)\n```\n"
    )
    assert [problem.split(": ", 2)[1] for problem in broken_links(page)] == [
        "missing.md", "other.md#nowhere", "#nowhere"
    ]


# --- the README ------------------------------------------------------------------------------------


def test_readme_is_short_and_keeps_the_two_commands() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    assert "./run-demo.sh" in text and "./run-tests.sh" in text
    assert "orbitct-app INPUT_DIR OUTPUT_DIR {anonymize,extract,all,report} [OPTIONS]" in text
    for stage in ("anonymize", "extract", "all", "report"):
        assert f"**{stage}**" in text, stage


# --- the command line --------------------------------------------------------------------------------


def _options() -> list[click.Option]:
    """The command's options, ``--help`` (which click adds itself) included."""
    help_option = command.get_help_option(click.Context(command, **command.context_settings))
    assert help_option is not None
    return [p for p in command.params if isinstance(p, click.Option)] + [help_option]


def _option_rows() -> dict[str, list[str]]:
    """Each option string of the docs/usage.md options table (``--spacing``, ``-v`` ...) -> its row."""
    rows: dict[str, list[str]] = {}
    for row in table_rows(read("usage.md"), "| option |"):
        for name in re.findall(r"`(-{1,2}[A-Za-z][\w-]*)", row[0]):
            rows[name] = row
    return rows


@pytest.mark.parametrize("option", _options(), ids=lambda o: o.opts[-1])
def test_every_option_is_in_the_usage_table(option: click.Option) -> None:
    rows = _option_rows()
    for name in (*option.opts, *option.secondary_opts):
        assert name in rows, f"{name} is missing from the options table of docs/usage.md"
    row = rows[option.opts[0]]
    if isinstance(option.type, click.Choice):
        for choice in option.type.choices:
            assert str(choice) in " ".join(row), f"{option.opts[0]}: choice {choice} not documented"
    default = option.default
    if option.show_default and default is not None:
        assert not callable(default), option.opts[0]
        documented = row[-1]
        try:
            assert float(documented) == float(default), option.opts[0]
        except ValueError:
            assert documented == str(default), option.opts[0]


def test_the_usage_table_names_only_real_options() -> None:
    known = {name for option in _options() for name in (*option.opts, *option.secondary_opts)}
    assert set(_option_rows()) <= known


def test_exit_codes_are_the_code_s_in_readme_and_usage() -> None:
    exit_tables = [
        table_rows(text, "| code | meaning |")
        for text in ((REPO / "README.md").read_text(encoding="utf-8"), read("usage.md"))
    ]
    assert exit_tables[0] == exit_tables[1]
    codes = {int(code) for row in exit_tables[0] for code in row[0].split(",")}
    assert codes == {code.value for code in ExitCode}


# --- outputs, limits, layout -------------------------------------------------------------------------


def test_columns_are_the_tables_columns() -> None:
    text = section(read("outputs-and-qc.md"), "### Columns")
    documented = {}
    for item in re.split(r"\n(?=- )", text):
        match = re.match(r"- `([\w.]+\.csv)`: (.*)", item, re.S)
        if match:
            documented[match.group(1)] = tuple(re.findall(r"`(\w+)`", match.group(2)))
    assert documented == {table.filename: table.columns for table in tables.TABLES}


def test_the_limits_name_real_constants_and_functions() -> None:
    rows = table_rows(read("hostile-input.md"), "| limit | value | where |")
    assert rows
    for row in rows:
        module, _, name = row[2].strip("`").rpartition(".")
        assert hasattr(importlib.import_module(f"orbitct_app.{module}"), name), row[2]


def test_the_layout_lists_every_module() -> None:
    text = section(read("development.md"), "## Layout of the code")
    package = text.split("Beside the package")[0]
    modules = sorted((REPO / "orbitct_app").rglob("*.py"))
    for path in modules:
        relative = path.relative_to(REPO / "orbitct_app")
        if path.name == "__init__.py":
            continue
        assert f"`{path.name}`" in package, f"{relative} is missing from the layout in docs/development.md"
        for folder in relative.parents[:-1]:
            assert f"`{folder.as_posix()}/`" in package, f"{relative}: its folder is not named"
    names = {path.name for path in modules}
    listed = set(re.findall(r"`([\w]+\.py)`", package))
    assert listed <= names, f"the layout names modules that do not exist: {sorted(listed - names)}"


def test_every_runtime_dependency_is_explained() -> None:
    text = section(read("development.md"), "## Dependencies")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for spec in project["dependencies"]:
        name = Requirement(spec).name
        if name.startswith("pylibjpeg-"):  # "pylibjpeg with its libjpeg and openjpeg plugins"
            assert "pylibjpeg" in text and name.removeprefix("pylibjpeg-") in text, name
        else:
            assert name in text, name
