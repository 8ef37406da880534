"""Which files of a share to fetch (`--select`), and the pieces they need (sans-IO).

A selection names files by index (as `p2p info` numbers them, from 0) or by a glob
pattern matched against the path in the share (`*.mkv`, `season1/*`; `*` also matches
`/`). Pieces run across file boundaries (docs/PROTOCOL.md 1.2.1), so a selected file's
first and last pieces may hold bytes of unselected neighbours: those pieces are fetched
and verified whole, and only the selected bytes are written.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from .errors import UsageError
from .manifest import Entry, Manifest

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi", ".ts", ".ogv", ".mpg",
                    ".mpeg", ".wmv", ".flv")


def select(m: Manifest, specs: list[str] | tuple[str, ...]) -> list[int]:
    """Indices into `m.files` chosen by `specs`, in order; every file when there is none.
    Raises UsageError (exit 2) for an index out of range or a pattern matching nothing."""
    files = m.files
    if not specs:
        return list(range(len(files)))
    chosen: set[int] = set()
    for spec in specs:
        s = spec.strip()
        if s.isdigit():
            i = int(s)
            if i >= len(files):
                raise UsageError(f"--select {spec}: the share has {len(files)} file"
                                 f"{'' if len(files) == 1 else 's'}, numbered 0 to "
                                 f"{len(files) - 1}; p2p info LINK lists them")
            chosen.add(i)
            continue
        hits = [i for i, f in enumerate(files)
                if fnmatchcase(f.path, s) or f.path.startswith(s.rstrip("/") + "/")]
        if not hits:
            raise UsageError(f"--select {spec!r} matches no file of the share; "
                             "p2p info LINK lists them")
        chosen.update(hits)
    return sorted(chosen)


def pieces_for(m: Manifest, indices: list[int]) -> list[int]:
    """The pieces holding any byte of the chosen files."""
    files = m.files
    out: set[int] = set()
    for i in indices:
        f = files[i]
        out.update(m.pieces_for_range(f.offset, f.end))
    return sorted(out)


def first_video(m: Manifest) -> int | None:
    """The index of the first file that looks like a video, for `p2p stream`."""
    for i, f in enumerate(m.files):
        if f.path.lower().endswith(VIDEO_EXTENSIONS):
            return i
    return None


def one_file(m: Manifest, specs: list[str] | tuple[str, ...], what: str) -> Entry:
    """The single file `specs` must name for `what` (stdout, a stream)."""
    chosen = select(m, specs)
    if len(chosen) != 1:
        raise UsageError(f"{what} takes one file, and --select chose {len(chosen)} of the "
                         f"share's {len(m.files)}; select one (p2p info LINK lists them)")
    return m.files[chosen[0]]
