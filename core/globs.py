"""The one glob rule of pipeline patterns, used by listing, push matching, `source` narrowing
and the raw zone alike.

- `*` and `?` match within one path segment, `**` across segments, `[...]` one character;
- a pattern without a glob means that object, or that folder on a segment boundary
  (`gs://b/land` covers `gs://b/land/x.csv`, never `gs://b/land-secrets/x.csv`);
- a trailing `/` means everything below the folder.

Pure string functions: local patterns are resolved to absolute paths before they get here.
"""

from __future__ import annotations

import re

GLOB_CHARS = frozenset("*?[")


def has_glob(pattern: str) -> bool:
    return any(char in GLOB_CHARS for char in pattern)


def literal_prefix(pattern: str) -> str:
    """The part before the first glob character: the listing prefix sent to GCS."""
    for index, char in enumerate(pattern):
        if char in GLOB_CHARS:
            return pattern[:index]
    return pattern


def split_glob(pattern: str) -> tuple[str, str]:
    """Split at the first path segment holding a glob: (`data/in`, `**/*.csv`)."""
    segments = pattern.split("/")
    for index, segment in enumerate(segments):
        if has_glob(segment):
            return "/".join(segments[:index]), "/".join(segments[index:])
    return pattern, ""


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a glob where `*` and `?` stay within one segment and `**` crosses segments."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif char == "*":
            out.append("[^/]*")
            i += 1
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            # a class never matches the separator, like `*` and `?`
            out.append("(?!/)[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(char))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def is_plain(uri: str) -> bool:
    """No `..` segment, percent-encoded dot or NUL: a name that means only what it says."""
    return ".." not in uri.split("/") and "%2e" not in uri.lower() and "\x00" not in uri


def within(folder: str, path: str) -> bool:
    """`path` is `folder` itself or below it, compared on segment boundaries."""
    folder = folder.rstrip("/")
    return path.rstrip("/") == folder or path.startswith(folder + "/")


def matches(pattern: str, uri: str) -> bool:
    """True when the object `uri` lies within `pattern`."""
    if not is_plain(uri):
        return False
    if pattern.endswith("/"):
        pattern += "**"
    if has_glob(pattern):
        return glob_regex(pattern).fullmatch(uri) is not None
    return within(pattern, uri)


def narrows(pattern: str, candidate: str) -> bool:
    """True when `candidate` (an object, a folder or a sub-glob) can only name objects that
    `pattern` covers, judged on its fixed leading segments.

    A sub-glob's matches are not all knowable here (`raw/**` under `raw/*.csv`): whoever
    lists it must still re-check every object with `matches`.
    """
    if not is_plain(candidate):
        return False
    if matches(pattern, candidate):
        return True
    if not has_glob(candidate):
        return False
    fixed = split_glob(candidate)[0]
    return within(split_glob(pattern)[0], fixed) if fixed else False
