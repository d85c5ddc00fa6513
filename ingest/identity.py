"""Who owns what in a collection: a file's relative source, and which stored documents belong to it.

Identity is relative. A file's `source` is its path under the folder given, named by that folder's base
name (`docs/guide.md`), or its name when the file itself was given; its document's id is the same, and a
BEIR corpus's records keep their `_id` and have the corpus file's source as owner. So a folder moved, or
mounted elsewhere in a container, re-ingests as unchanged, and no server path is stored: absolute paths go
to the log only. Collections written before this hold absolute sources; an absolute source that ends with
a file's relative source counts as the same owner (see `same_owner`), so they re-ingest unchanged too.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from ingest.parsers import doc_type_of


def discover(paths: Iterable[Path]) -> list[tuple[Path, str, str | None]]:
    """(file, source, reason to skip or None) for every file under the given paths.

    A file's source is its path relative to the folder given, prefixed by that folder's name
    (`docs/guide.md`), or its name when the file itself was given. It is the id of the file's document (a
    BEIR corpus's records keep their own), so ids depend neither on the current directory nor on where the
    folder lies, and golden sets can name them.
    """
    out = []
    for given in paths:
        root = Path(given)
        if root.is_dir():
            base = root.resolve()
            name = base.name or "root"  # "/" has no name; a source must never look absolute
            for f in sorted(p for p in base.rglob("*") if p.is_file() or p.is_symlink()):
                rel = f.relative_to(base)
                if any(part.startswith(".") for part in rel.parts):
                    continue
                reason = None if doc_type_of(f) else f"unsupported file type {f.suffix or '(none)'}"
                out.append((f, f"{name}/{rel.as_posix()}", reason))
        else:
            out.append((root.absolute(), root.name, None))
    return out


def is_absolute(source: str) -> bool:
    return source.startswith("/")


def views(source: str) -> set[str]:
    """The relative sources a stored source stands for: itself, or for an absolute one (written before
    identity became relative) each of its trailing paths (`/srv/a/docs/x.md` -> `x.md`, `docs/x.md`, ...)."""
    if not is_absolute(source):
        return {source}
    parts = PurePosixPath(source).parts[1:]
    return {"/".join(parts[k:]) for k in range(len(parts))}


def same_owner(stored: str, source: str) -> bool:
    """Whether a stored document's source is the file with relative source `source`: equal, or an absolute
    source of an older version that ends with it (the same folder, wherever it lay then)."""
    return stored == source or (is_absolute(stored) and stored.endswith("/" + source))


def shown(source: str) -> str:
    """A stored source as a report may show it: an old absolute one by its last two parts only."""
    if not is_absolute(source):
        return source
    return ".../" + "/".join(PurePosixPath(source).parts[-2:])


class Owners:
    """The collection's documents by owning source, relative or (from older versions) absolute."""

    def __init__(self, state: dict[str, dict]):
        self.by_source: dict[str, set[str]] = {}
        for doc_id, entry in state.items():
            self.by_source.setdefault(entry.get("source") or "", set()).add(doc_id)
        self.legacy: dict[str, set[str]] = {}  # a relative view -> absolute stored sources that end with it
        for src in self.by_source:
            if is_absolute(src):
                for view in views(src):
                    self.legacy.setdefault(view, set()).add(src)

    def owned_by(self, source: str) -> set[str]:
        out = set(self.by_source.get(source, ()))
        for src in self.legacy.get(source, ()):
            out |= self.by_source[src]
        return out


def sync_scope(paths: Iterable[Path]) -> Callable[[str], bool]:
    """Whether a stored source lies under the given paths, for --sync.

    Scope is by relative source: a folder `x/docs` covers the sources `docs/...`, a file `x/c.jsonl` the
    source `c.jsonl`, wherever they lie now. Absolute sources of older versions are in scope when under
    the folder given or when one of their trailing paths is (the folder moved since).
    """
    scopes = []
    for p in paths:
        given = Path(p)
        if given.is_dir():
            resolved = given.resolve()
            scopes.append((resolved.name or "root", True, resolved))
        else:
            scopes.append((given.name, False, given.absolute()))

    def in_scope(source: str) -> bool:
        for name, is_dir, root in scopes:
            if is_dir:
                if source.startswith(name + "/"):
                    return True
                if is_absolute(source) and (f"/{name}/" in source or root in Path(source).parents):
                    return True
            elif source == name or (is_absolute(source) and source.endswith("/" + name)):
                return True
        return False

    return in_scope
