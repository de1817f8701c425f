"""MkDocs hooks: mount files kept outside ``docs/`` and generate the CLI reference.

Loaded by ``mkdocs.yml`` (``hooks: [docs/hooks.py]``). Two jobs, both at build time so
that nothing is copied by hand and nothing can go stale:

* the notebooks (``notebooks/*.ipynb`` and ``notebooks/README.md``) and the benchmark notes
  (``benchmarks/README*.md``) are added to the site under the same relative paths they
  have in the repository, so their relative links keep working and strict mode checks
  them; every notebook not already in the navigation is appended, sorted, to its
  "Lessons" section (a new lesson needs no edit to ``mkdocs.yml``);
* ``cli.md`` is generated from :func:`convexdict.cli.build_parser`: one section per
  sub-command holding its ``--help`` text;
* Sphinx roles left in docstrings (``:func:`x```, ``:class:`~a.b.C```) are rendered as code
  and linked to the API reference when they name a documented object;
* every field and property of ``Certificate``, ``Comparison`` and ``Verification`` must
  be named (in backticks) on ``reading-a-certificate.md``; a missing one is a warning;
* every name in ``convexdict.__all__`` must be documented on an ``api/*.md`` page (a
  ``::: convexdict.NAME`` block) unless listed in ``UNDOCUMENTED`` with a reason; a missing
  one is a warning, so ``mkdocs build --strict`` fails.

Run ``python docs/hooks.py`` to print the generated CLI reference.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MOUNTS = {
    "notebooks": ("*.ipynb", "README.md"),
    "benchmarks": ("README*.md",),
}
# public names deliberately left out of the API pages, each with its reason (none today)
UNDOCUMENTED: dict[str, str] = {}
HELP_COLUMNS = "88"  # fixed width so the generated page does not depend on the terminal


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-command parsers of ``parser`` in the order they were registered."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_reference_markdown() -> str:
    """Markdown for the command line: the top-level ``--help`` and each sub-command's.

    Returns
    -------
    str
        A page with one section per sub-command of ``convexdict``, each holding the
        sub-command's ``--help`` output verbatim in a code block.
    """
    from convexdict.cli import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_COLUMNS
    try:
        parser = build_parser()
        commands = _subcommands(parser)
        parts = [
            "# Command line\n",
            "Generated at build time from `convexdict.cli.build_parser()` (the `--help` of "
            "every sub-command); do not edit by hand. Every option shows its default.\n",
            "Exit codes: `0` success; `2` an error in the input (one line on stderr, no "
            "traceback); `130` interrupted; `verify` exits `1` when the certificate is "
            "refuted (and `2` when it is out of reach), `sweep` exits `1` when a cell "
            "failed.\n",
            "## `convexdict`\n",
            f"```text\n{parser.format_help().rstrip()}\n```\n",
        ]
        for name, sub in commands.items():
            parts.append(f"## `convexdict {name}`\n")
            parts.append(f"```text\n{sub.format_help().rstrip()}\n```\n")
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(parts)


def missing_api_names(api_dir: Path = ROOT / "docs" / "api") -> list[str]:
    """Public names of ``convexdict`` that no API page documents.

    Parameters
    ----------
    api_dir : Path
        Folder of the API reference pages (``::: convexdict.NAME`` blocks).

    Returns
    -------
    list of str
        Names in ``convexdict.__all__``, minus ``UNDOCUMENTED``, with no block.
    """
    import convexdict

    pattern = re.compile(r"^:::\s*convexdict\.(\w+)\s*$", re.MULTILINE)
    documented = set()
    for page in api_dir.glob("*.md"):
        documented.update(pattern.findall(page.read_text()))
    return sorted(set(convexdict.__all__) - documented - set(UNDOCUMENTED))


ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|obj|exc|const):<code>(~?)([\w.]+)</code>")


def _role_to_autoref(match: re.Match) -> str:
    """``:func:<code>~a.b.c</code>`` -> an optional autoref link titled ``c`` (or ``a.b.c``)."""
    tilde, path = match.groups()
    name = path.rsplit(".", 1)[-1]
    title = name if tilde else path
    # public names are documented at the top level, whatever module the docstring names
    identifier = f"convexdict.{name}" if name in _public_names() else path
    return f'<autoref identifier="{identifier}" optional><code>{title}</code></autoref>'


def _public_names() -> frozenset[str]:
    import convexdict

    return frozenset(convexdict.__all__)


def on_page_content(html, page, config, files):
    """Render Sphinx roles in docstrings as (linked) code."""
    return ROLE.sub(_role_to_autoref, html)


def on_config(config):
    """Append every notebook not named in the navigation to the "Lessons" section."""
    named = set()

    def walk(items):
        for item in items:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            if isinstance(value, list):
                walk(value)
            else:
                named.add(value)

    walk(config.nav or [])
    for item in config.nav or []:
        if isinstance(item, dict) and "Lessons" in item:
            item["Lessons"].extend(
                f"notebooks/{path.name}" for path in sorted((ROOT / "notebooks").glob("*.ipynb"))
                if f"notebooks/{path.name}" not in named
            )
    return config


READ_PAGE = ROOT / "docs" / "reading-a-certificate.md"
READ_CLASSES = ("Certificate", "Comparison", "Verification")


def unexplained_fields(page: Path = READ_PAGE) -> list[str]:
    """Fields and properties of the result classes that the page does not name.

    Parameters
    ----------
    page : Path
        The "How to read a certificate" page.

    Returns
    -------
    list of str
        ``Class.field`` for every dataclass field or public property of
        ``READ_CLASSES`` that does not appear in backticks on the page.
    """
    import dataclasses

    import convexdict

    text = page.read_text()
    missing = []
    for name in READ_CLASSES:
        cls = getattr(convexdict, name)
        fields = [f.name for f in dataclasses.fields(cls)]
        fields += [k for k, v in vars(cls).items() if isinstance(v, property) and k[0] != "_"]
        missing += [f"{name}.{f}" for f in fields if f"`{f}`" not in text]
    return missing


def _mkdocs_on_files(files, config):
    """Add the mounted files and the generated ``cli.md`` to the site's files."""
    from mkdocs.structure.files import File

    for folder, patterns in MOUNTS.items():
        for pattern in patterns:
            for path in sorted((ROOT / folder).glob(pattern)):
                uri = f"{folder}/{path.name}"
                if files.get_file_from_path(uri) is None:  # a real file, read from the repo
                    files.append(File(uri, src_dir=str(ROOT), dest_dir=config["site_dir"],
                                      use_directory_urls=config["use_directory_urls"]))
    files.append(File.generated(config, "cli.md", content=cli_reference_markdown()))
    missing = missing_api_names()
    if missing:
        logging.getLogger("mkdocs.hooks.convexdict").warning(
            "public names without an API reference entry (add '::: convexdict.NAME' to a "
            "docs/api/*.md page, or list them in UNDOCUMENTED in docs/hooks.py): %s",
            ", ".join(missing),
        )
    unexplained = unexplained_fields()
    if unexplained:
        logging.getLogger("mkdocs.hooks.convexdict").warning(
            "fields not explained on reading-a-certificate.md: %s", ", ".join(unexplained)
        )
    return files


try:  # the decorator only exists inside MkDocs; the module also runs as a script
    from mkdocs.plugins import event_priority
except ImportError:  # pragma: no cover
    on_files = _mkdocs_on_files
else:
    # before mkdocs-jupyter's own on_files (priority 0), which turns notebooks into pages
    on_files = event_priority(100)(_mkdocs_on_files)


if __name__ == "__main__":
    print(cli_reference_markdown())
