#!/usr/bin/env python3
"""Print "name version license" for every crate linked into pam_mfa.so and mfa.

Reads `cargo metadata` on stdin. Only normal (non-build, non-dev) dependencies
reachable from the root count, and proc-macro crates are left out: they run
at compile time and no code of theirs ends up in the installed files.
"""
import json
import sys

meta = json.load(sys.stdin)
packages = {p["id"]: p for p in meta["packages"]}
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
root = meta["resolve"]["root"]


def is_proc_macro(pkg):
    return any("proc-macro" in t["kind"] for t in pkg["targets"])


seen, stack = set(), [root]
while stack:
    for dep in nodes[stack.pop()]["deps"]:
        normal = any(k["kind"] is None for k in dep["dep_kinds"])
        if normal and dep["pkg"] not in seen:
            seen.add(dep["pkg"])
            stack.append(dep["pkg"])

linked = [packages[i] for i in seen if not is_proc_macro(packages[i])]
for pkg in sorted(linked, key=lambda p: (p["name"], p["version"])):
    print(pkg["name"], pkg["version"], pkg["license"] or "see crate")
