"""The shape of the code the project promises: small functions, documentation that lives in the repository, and
a short README (at most 300 lines; the rest in docs/) whose layout section is the tree and whose links resolve."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 50
ENTRY_SCRIPTS = (
    "infer.py",
    "train_ae.py",
    "train_dit.py",
    "pre_encode.py",
    "unwrap_model.py",
    "evaluate.py",
    "diagnose.py",
)
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".sh", ".toml", ".txt", ".cfg"}


def _python_files() -> list[Path]:
    return [
        *sorted((REPO / "mgeldm").rglob("*.py")),
        *sorted((REPO / "recipes").rglob("*.py")),
        *sorted((REPO / "benchmarks").glob("*.py")),
        *(REPO / name for name in ENTRY_SCRIPTS),
    ]


def test_no_function_over_50_lines():
    long = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []


def test_every_root_script_has_one_shape():
    for name in ENTRY_SCRIPTS:
        code = [line for line in (REPO / name).read_text().split('"""')[-1].splitlines() if line.strip()]
        assert code == [
            f"from mgeldm.cli.{name[:-3]} import main",
            'if __name__ == "__main__":',
            "    raise SystemExit(main())",
        ], name


def _project_text_files() -> list[Path]:
    folders = ("mgeldm", "recipes", "configs", "scripts", "tests", "benchmarks", "docs")
    files = [
        p
        for folder in folders
        for p in (REPO / folder).rglob("*")
        if p.is_file() and p.suffix in TEXT_SUFFIXES and "fixtures" not in p.parts
    ]
    return files + [p for p in REPO.iterdir() if p.is_file() and p.suffix in TEXT_SUFFIXES]


def test_references_resolve_inside_the_repository():
    """No reference to the specification the code was first written against (not in the repository); the
    documentation the code points to is docs/compatibility.md, and every section it names exists."""
    outside = "SP" + "EC "
    assert [str(p.relative_to(REPO)) for p in _project_text_files() if outside in p.read_text()] == []
    doc = (REPO / "docs" / "compatibility.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", doc, re.M)}
    cited = {
        m for p in _project_text_files() for m in re.findall(r"docs/compatibility\.md#([a-z0-9-]+)", p.read_text())
    }
    assert cited and cited <= anchors, cited - anchors


def _layout_block() -> str:
    readme = (REPO / "README.md").read_text()
    return readme.split("## Layout", 1)[1].split("```", 2)[1]


def test_readme_layout_names_the_tree():
    """Every top-level folder and every part of the package is in the README's layout section, and everything
    it names exists."""
    block = _layout_block()
    named = set(re.findall(r"([A-Za-z_][A-Za-z0-9_.]*(?:\.py|/))", block))
    package = {
        p.name + ("/" if p.is_dir() else "")
        for p in (REPO / "mgeldm").iterdir()
        if not p.name.startswith((".", "__")) and (p.is_dir() or p.suffix == ".py")
    }
    top = {
        p.name + "/"
        for p in REPO.iterdir()
        if p.is_dir()
        and not p.name.startswith(".")
        and p.name not in ("mgeldm", "build", "dist", "runs", "checkpoints", "quickstart_out", "outputs")
        and not p.name.endswith(".egg-info")
    }
    assert package - named == set() and top - named == set() and set(ENTRY_SCRIPTS) - named == set()
    everything = {p.name + ("/" if p.is_dir() else "") for p in REPO.rglob("*") if ".git" not in p.parts}
    assert named - everything == set()


def _package_layers() -> list[str]:
    """The parts of the package in the order of the README's layout section (the lowest first)."""
    block = _layout_block().split("mgeldm/\n", 1)[1].split("\nconfigs/", 1)[0]
    return [m.rstrip("/").removesuffix(".py") for m in re.findall(r"^  ([a-z_]+(?:\.py|/))", block, re.M)]


def test_imports_point_down_the_layers():
    """A module imports only the parts listed before its own in the README's layout (``tasks`` and ``training``
    not each other); the recipes only the public API (tests/recipes checks that)."""
    layers = _package_layers()
    assert layers[0] == "errors" and layers[-1] == "cli"
    upward = []
    for path in sorted((REPO / "mgeldm").rglob("*.py")):
        part = path.relative_to(REPO / "mgeldm").parts[0].removesuffix(".py")
        if part == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.module or node.level:
                continue
            if node.module.startswith("mgeldm."):
                used_parts = [node.module.split(".")[1]]
            elif node.module == "mgeldm":  # from mgeldm import checks
                used_parts = [a.name for a in node.names if a.name in layers]
            else:
                continue
            for used in used_parts:
                crossing = {part, used} == {"tasks", "training"}
                if used != part and (crossing or layers.index(used) > layers.index(part)):
                    upward.append(f"{path.relative_to(REPO)}: {node.module} ({used})")
    assert upward == []


README_MAX_LINES = 300
DOC_PAGES = ("README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md")))


def _prose(path: Path) -> str:
    """A markdown file without its fenced code blocks (whose '#' lines are comments, not headings)."""
    return re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)


def _anchors(path: Path) -> set[str]:
    """The section anchors of a markdown file, as GitHub writes them."""
    return {
        re.sub(r"[^a-z0-9_ -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", _prose(path), re.M)
    }


def test_readme_is_short():
    """The README holds the set-up, the quickstart, inference, training and the layout; the rest is in docs/."""
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, len(lines)
    for page in ("quickstart", "extraction", "inference", "training", "evaluation", "benchmarks", "compatibility"):
        assert f"(docs/{page}.md" in "\n".join(lines), page


def test_documentation_links_resolve():
    """Every relative link of the README and of docs/*.md names a file that exists and, with '#', one of its
    sections."""
    broken = []
    for name in DOC_PAGES:
        page = REPO / name
        for target in re.findall(r"\]\(([^)\s]+)\)", _prose(page)):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            if not dest.exists() or (anchor and anchor not in _anchors(dest)):
                broken.append(f"{name}: {target}")
    assert broken == []


def test_documented_infer_options_exist():
    """Every `+option` the README's Inference section and docs/inference.md name is an option of infer.py, and
    docs/inference.md names every one."""
    from mgeldm.cli.infer import OPTIONS

    readme = (REPO / "README.md").read_text().split("## Inference", 1)[1].split("\n## ", 1)[0]
    page = (REPO / "docs" / "inference.md").read_text()
    named = {m for text in (readme, page) for m in re.findall(r"`\+([a-z_]+)", text)} - {"key"}  # `+key=value`
    assert named - set(OPTIONS) == set()
    assert set(OPTIONS) - set(re.findall(r"`\+([a-z_]+)", page)) == set()
