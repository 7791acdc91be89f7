#!/usr/bin/env python3
"""Keeps a markdown file's table of contents equal to its headings.

  tests/docs_contents.py --check FILE   exit 1, naming the difference, if the
                                        contents block is missing or stale
  tests/docs_contents.py --write FILE   rewrite the block from the headings

The block sits between BEGIN and END (HTML comments, invisible when
rendered) and lists every "## " and "### " heading outside code fences but
its own ("## Contents"), linked with GitHub's anchors (lower case,
punctuation dropped, spaces to hyphens, "-1", "-2", ... on repeats). Text
outside the block is left alone. The ctest docs.performance_contents runs
--check on docs/performance.md, so a new section there needs one --write."""
import re
import sys

BEGIN = "<!-- contents: written by tests/docs_contents.py --write; do not edit by hand -->"
END = "<!-- end of contents -->"


def anchor(title, seen):
    """GitHub's anchor for a heading, counting repeats in `seen`."""
    a = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
    n = seen.get(a, 0)
    seen[a] = n + 1
    return a if n == 0 else "%s-%d" % (a, n)


def headings(lines):
    """(level, title) of every ## and ### heading outside code fences."""
    out, fenced = [], False
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"^(#{2,3}) (.+)$", line)
        if m:
            out.append((len(m.group(1)), m.group(2)))
    return out


def contents(lines):
    """The block's lines, BEGIN and END included."""
    seen, block = {}, [BEGIN]
    for level, title in headings(lines):
        a = anchor(title, seen)
        if title != "Contents":  # the block's own heading
            block.append("%s- [%s](#%s)" % ("  " * (level - 2), title, a))
    return block + [END]


def main(argv):
    if len(argv) != 3 or argv[1] not in ("--check", "--write"):
        sys.exit(__doc__)
    path = argv[2]
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except OSError as e:
        sys.exit("docs_contents: cannot read %s: %s" % (path, e.strerror))
    if BEGIN not in lines or END not in lines or lines.index(END) < lines.index(BEGIN):
        sys.exit("docs_contents: %s has no contents block (a line %r, then %r)" % (path, BEGIN, END))
    b, e = lines.index(BEGIN), lines.index(END)
    want = contents(lines)
    if argv[1] == "--write":
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines[:b] + want + lines[e + 1:]))
        return 0
    have = lines[b:e + 1]
    if have == want:
        print("docs_contents: %s: %d headings, contents up to date" % (path, len(want) - 2))
        return 0
    extra = [l for l in have if l not in want]
    missing = [l for l in want if l not in have]
    print("docs_contents: %s: the contents block differs from the headings;"
          " run tests/docs_contents.py --write %s" % (path, path))
    for l in missing:
        print("  missing: " + l)
    for l in extra:
        print("  stale:   " + l)
    if not missing and not extra:
        print("  (same entries, another order)")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
