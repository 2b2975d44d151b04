#!/usr/bin/env python3
"""Checks the crate's import graph, read from its `use` lines and `crate::`/`super::` paths.

Rules (docs/layout.md, "The floors"):
  1. No circle between rooms (the top-level modules of src/).
  2. No circle between files, except through a module and its own submodules (a parent that
     re-exports its child, a child that uses its parent's types).
  3. Nothing below the wiring and the faces imports them: only `pipeline`, `cli`, `doctor`, `bench`,
     `config` and `main` may import `pipeline`, `cli`, `http`, `doctor` or `bench`.
  4. Only `config`, `pipeline`, `cli`, `doctor` and `bench` use the composed `crate::config::Config`;
     every other room is handed its own section.

    scripts/import-graph.py [SRC] [--rooms]   # --rooms prints the room graph, floor by floor
Exit status 1 with one line per violation.
"""
import os
import re
import sys
from collections import defaultdict

TOP = {"pipeline", "cli", "http", "doctor", "bench"}
WIRING = {"pipeline", "cli", "doctor", "bench", "config", "main", "lib"}
CONFIG_READERS = {"config", "pipeline", "cli", "doctor", "bench"}


def modules(src):
    """Module path (tuple) -> file, for every .rs file under src."""
    found = {}
    for folder, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(folder, name), src)[:-3].split(os.sep)
            if rel in (["lib"], ["main"]):
                path = () if rel == ["lib"] else ("main",)
            elif rel[-1] == "mod":
                path = tuple(rel[:-1])
            else:
                path = tuple(rel)
            found[path] = os.path.join(src, *rel) + ".rs"
    return found


def code_of(text):
    """The text without comments, string literals and `#[cfg(test)] mod tests` (tests may reach anywhere)."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    tests = re.search(r"#\[cfg\(test\)\]\s*mod\s+tests\b", text)
    return text[: tests.start()] if tests else text


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> ["a::b", "a::c::d", "a::c::e"]."""
    tree = re.sub(r"\s+", "", tree)
    tree = re.sub(r"\bas\w+", "", tree)
    depth, start, parts = 0, 0, []
    brace = tree.find("{")
    if brace < 0:
        return [tree]
    prefix, inner = tree[:brace], tree[brace + 1 : tree.rfind("}")]
    for i, ch in enumerate(inner):
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
    parts.append(inner[start:])
    return [p for part in parts if part for p in expand_use(prefix + part)]


def references(path, text, mods):
    """Absolute module paths this file names."""
    children = {m[-1] for m in mods if len(m) == len(path) + 1 and m[: len(path)] == path}
    paths = []
    for tree in re.findall(r"\buse\s+([^;]+);", text):
        paths.extend(expand_use(tree))
    paths.extend(re.findall(r"\b(?:crate|super|self)(?:::\w+)+", text))
    out = []
    for p in paths:
        segs = [s for s in p.split("::") if s and s != "*"]
        if not segs:
            continue
        if segs[0] == "crate":
            absolute = segs[1:]
        elif segs[0] in ("super", "self"):
            base = list(path)
            while segs and segs[0] in ("super", "self"):
                if segs.pop(0) == "super":
                    base = base[:-1]
            absolute = base + segs
        elif segs[0] in children:
            absolute = list(path) + segs
        else:
            continue  # an external crate
        out.append(tuple(absolute))
    return out


def resolve(target, mods):
    """The deepest module file that `target` lies in."""
    for n in range(len(target), -1, -1):
        if target[:n] in mods:
            return target[:n]
    return ()


def is_lineage(a, b):
    return a[: len(b)] == b or b[: len(a)] == a


def cycles(graph):
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    advanced = True
                    break
                if nxt in on:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    src = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    mods = modules(src)
    room = lambda m: m[0] if m else "lib"
    files = defaultdict(set)
    rooms = defaultdict(set)
    problems = []
    for path, file in sorted(mods.items()):
        text = code_of(open(file, encoding="utf-8").read())
        for target in references(path, text, mods):
            to = resolve(target, mods)
            if to == path or not to:
                continue
            if not is_lineage(path, to):
                files[path].add(to)
            if room(to) != room(path):
                rooms[room(path)].add(room(to))
        rel = os.path.relpath(file, os.path.join(src, ".."))
        if room(path) not in CONFIG_READERS and re.search(r"\bconfig::(?:\{[^}]*\bConfig\b|Config\b)", text):
            problems.append(f"{rel}: uses crate::config::Config; hand it its own section instead")
    for a in sorted(rooms):
        for b in sorted(rooms[a]):
            if b in TOP and a not in WIRING:
                problems.append(f"room {a} imports {b}: only the wiring and the faces may")
    for component in cycles({k: set(v) for k, v in rooms.items()}):
        problems.append("circle between rooms: " + " -> ".join(component))
    for component in cycles({k: set(v) for k, v in files.items()}):
        names = [os.path.relpath(mods[m], os.path.join(src, "..")) for m in component]
        problems.append("circle between files: " + ", ".join(names))
    if "--rooms" in sys.argv:
        print_floors(rooms)
    for problem in problems:
        print(problem)
    edges = sum(len(v) for v in rooms.values())
    if problems:
        print(f"import graph: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"import graph: {len(mods)} files, {len(set(rooms) | set().union(*rooms.values()))} rooms, {edges} arrows between rooms, no circle, nothing below the wiring imports it")
    return 0


def print_floors(rooms):
    """Each room on the floor above everything it imports (floor 0 imports nothing)."""
    floor = {}

    def height(r, seen=()):
        if r in floor:
            return floor[r]
        if r in seen:
            return 0
        floor[r] = 1 + max((height(t, seen + (r,)) for t in rooms.get(r, ())), default=-1)
        return floor[r]

    for r in set(rooms) | set().union(*rooms.values()):
        height(r)
    for level in range(max(floor.values()) + 1):
        members = sorted(r for r, f in floor.items() if f == level)
        print(f"floor {level}: " + ", ".join(f"{r} -> {sorted(rooms.get(r, ()))}" if rooms.get(r) else r for r in members))


if __name__ == "__main__":
    sys.exit(main())
