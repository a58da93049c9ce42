"""The documentation holds together, checked without mkdocs installed.

- Every public module has a docstring, and so has every function and class
  it makes public (the names in its ``__all__``; for
  :mod:`pyautoencoder_fast.reference`, which has none, the functions and
  classes it defines without a leading underscore): the API reference
  (``docs/api.md``, mkdocstrings) is made from them.
- ``docs/api.md`` documents every public module, and nothing else.
- ``mkdocs.yml``'s nav lists every page of ``docs/`` and no missing one
  (mkdocs itself only notes a page left out of the nav).
- Every relative link of ``README.md`` reaches a file of the tree, and
  every ``#anchor`` on a ``docs/`` page (or on the README itself) a heading
  of it (mkdocs checks the pages' own links; the README is not a page).

``.ci/docs`` builds the site itself (``mkdocs build --strict``).
"""

from __future__ import annotations

import importlib
import inspect
import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MKDOCS_YML = ROOT / "mkdocs.yml"

PUBLIC_MODULES = [
    "pyautoencoder_fast",
    "pyautoencoder_fast.functional",
    "pyautoencoder_fast.loss",
    "pyautoencoder_fast.vanilla",
    "pyautoencoder_fast.variational",
    "pyautoencoder_fast.base",
    "pyautoencoder_fast.nidl",
    "pyautoencoder_fast.ml_starter",
    "pyautoencoder_fast.scvi",
    "pyautoencoder_fast.reference",
]

for _path in (README, DOCS / "api.md", MKDOCS_YML):
    if not _path.is_file():  # (.ci/wheel_check copies them next to tests/)
        pytest.fail(f"{_path} is missing: the documentation cannot be checked", pytrace=False)


def _public_names(module) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    return [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and obj.__module__ == module.__name__
    ]


def _own_docstring(obj) -> str:
    """The docstring written for obj itself: not inherited, and not the
    signature a dataclass writes when it has none."""
    doc = vars(obj).get("__doc__") if inspect.isclass(obj) else obj.__doc__
    doc = (doc or "").strip()
    if inspect.isclass(obj) and doc.startswith(f"{obj.__name__}(") and doc.endswith(")") and "\n" not in doc:
        return ""  # dataclasses.dataclass's stand-in
    return doc


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_function_and_class_has_a_docstring(module_name):
    module = importlib.import_module(module_name)
    assert (module.__doc__ or "").strip(), f"{module_name} has no module docstring"
    names = _public_names(module)
    assert names, f"{module_name} makes nothing public"
    missing = []
    for name in names:
        assert hasattr(module, name), f"{module_name}.__all__ names {name!r}, which the module lacks"
        obj = getattr(module, name)
        if inspect.ismodule(obj):
            assert obj.__name__ in PUBLIC_MODULES, f"{module_name}.{name}: module {obj.__name__} is not in PUBLIC_MODULES"
        elif (inspect.isfunction(obj) or inspect.isclass(obj) or callable(obj)) and not _own_docstring(obj):
            missing.append(name)
    assert not missing, f"{module_name}: no docstring for {missing}"


def test_the_docstring_check_sees_what_it_must():
    # A check that found every docstring would pass vacuously.
    import dataclasses

    @dataclasses.dataclass
    class Undocumented:
        a: int

    class Documented(Undocumented):
        """Documented."""

    class Inheriting(Documented):
        pass

    def documented():
        """Documented."""

    assert _own_docstring(Undocumented) == "" and _own_docstring(Inheriting) == ""
    assert _own_docstring(Documented) == "Documented." and _own_docstring(documented) == "Documented."
    reference = importlib.import_module("pyautoencoder_fast.reference")
    assert "reparameterize" in _public_names(reference) and "torch" not in _public_names(reference)


def test_the_api_page_documents_every_public_module():
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    documented = re.findall(r"^::: ?(\S+)\s*$", text, flags=re.M)
    assert sorted(documented) == sorted(PUBLIC_MODULES), documented


def _nav_pages() -> list[str]:
    text = MKDOCS_YML.read_text(encoding="utf-8")
    nav = re.search(r"^nav:\s*\n((?:[ \t]+.*\n|\s*\n)+)", text, flags=re.M)
    assert nav, "mkdocs.yml has no nav"
    return re.findall(r"^\s*-\s*(?:[^:\n]+:\s*)?(\S+\.md)\s*$", nav.group(1), flags=re.M)


def test_the_nav_lists_every_page():
    nav = _nav_pages()
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages, f"nav: {sorted(nav)}\npages: {pages}"
    assert len(nav) == len(set(nav)), nav
    assert nav[0] == "index.md", nav


def _slug(heading: str) -> str:
    """A heading's anchor, as Python-Markdown's toc (mkdocs) makes it; GitHub's
    agrees for the headings here."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(path: Path) -> set[str]:
    anchors, fenced = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if re.match(r"^ {0,3}(```|~~~)", line):
            fenced = not fenced
        elif not fenced and (m := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)):
            anchors.add(_slug(m.group(1)))
    return anchors


def _links(text: str) -> list[str]:
    text = re.sub(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", "", text, flags=re.M | re.S)  # no code blocks
    text = re.sub(r"`[^`\n]*`", "", text)  # nor code spans
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_the_readme_links_reach_their_targets():
    links = _links(README.read_text(encoding="utf-8"))
    local = [link for link in links if not re.match(r"^[a-z][a-z0-9+.-]*:", link)]
    assert any(link.startswith("docs/") for link in local), links
    broken = []
    for link in local:
        path, _, anchor = link.partition("#")
        target = ROOT / path if path else README
        if not target.is_file():
            broken.append(f"{link}: no file {target.relative_to(ROOT)}")
        elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
            broken.append(f"{link}: no heading with the anchor #{anchor} in {target.relative_to(ROOT)}")
    assert not broken, "\n".join(broken)


def test_the_link_check_sees_what_it_must():
    assert _slug("scvi-tools' own models, switched (`model.train()`)") == "scvi-tools-own-models-switched-modeltrain"
    assert _slug("On a GPU (NVIDIA H200)") == "on-a-gpu-nvidia-h200"
    assert _slug("`torch.compile`") == "torchcompile"
    assert _links("[a](docs/a.md) `[b](b.md)`\n```\n[c](c.md)\n```\n[d](https://x.org)") == ["docs/a.md", "https://x.org"]
