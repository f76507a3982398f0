"""Check the links between the pages of the built documentation, offline.

    python docs/check_links.py docs/_build/html

Every ``href`` and ``src`` of every HTML page (the theme's templates copied into
``_static`` are not pages) that points inside the site must name a
file that exists there and, with a ``#fragment``, an element of that page with that
``id`` (or an ``<a name=...>``). Links to other sites (``https:``, ``mailto:``, ...) are
not followed: Sphinx's own linkcheck needs the internet, which CI does not have. Exits 1
and lists each broken link when there is one.
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _Page(HTMLParser):
    """The ids a page defines and the links it makes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(str(found["id"]))
        if tag == "a" and found.get("name"):
            self.ids.add(str(found["name"]))
        for attribute in ("href", "src"):
            value = found.get(attribute)
            if value is not None:
                self.links.append(value)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _pages(site: Path) -> list[Path]:
    """The site's pages: its HTML files but the theme's templates in ``_static``."""
    return [p for p in sorted(site.rglob("*.html"))
            if "_static" not in p.relative_to(site).parts]


def check(site: Path) -> list[str]:
    """The broken internal links of the site in ``site``, one line each."""
    site = site.resolve()
    pages = {path: _parse(path) for path in _pages(site)}
    problems = []
    for path, page in pages.items():
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith("//") or not (parts.path or parts.fragment):
                continue  # another site, mailto:, data:, javascript:, or href="#"
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            where = f"{path.relative_to(site).as_posix()}: {link}"
            if not target.is_relative_to(site) or not target.is_file():
                problems.append(f"{where}: no such file")
                continue
            fragment = unquote(parts.fragment)
            if fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if fragment not in ids:
                    problems.append(f"{where}: no id {fragment!r} in "
                                    f"{target.relative_to(site).as_posix()}")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__)
        return 2
    site = Path(args[0])
    if not (site / "index.html").is_file():
        print(f"{site} holds no built site (no index.html)")
        return 2
    problems = check(site)
    count = len(_pages(site.resolve()))
    for problem in problems:
        print(problem)
    print(f"{count} pages checked: {len(problems)} broken internal links")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
