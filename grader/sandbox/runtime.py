"""The minimal runtime a sandboxed interpreter needs, and nothing else of the host.

Instead of binding all of /usr (where Debian keeps ``/usr/share/datasets/fashion-mnist``, the
public labels of the MyNet set, and much more of the host), the bwrap backend binds only:

- the interpreter: ``sys.executable`` and every link on the way to the real file;
- the folders on ``sys.path`` as the interpreter runs with ``-I`` (the standard library, its
  lib-dynload, the venv's site-packages) and the venv's ``pyvenv.cfg``;
- libpython when the interpreter is built shared;
- every shared library those load, as ``ldd`` resolves it over the interpreter and every
  ``*.so`` on those folders (the dynamic loader included), at the path the loader asks for,
  with the host's links between that path and the real file re-made as links;
- ``/etc/ld.so.cache``, so the loader finds them where it finds them on the host.

``ldd`` over torch takes seconds, so the answer is kept per interpreter in this process and in
a cache file (``CACHE_DIR``, root only) keyed by the modification times of what was scanned
(``_watched``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from grader.errors import GraderFault

CACHE_DIR = Path("/var/lib/grader-sandbox/runtime")
LDD_BATCH = 64
_LDD_LINE = re.compile(r"^\s*(?:\S+\s+=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)\s*$")
_ASK = (
    "import json, sys, sysconfig\n"
    "shared = sysconfig.get_config_var('Py_ENABLE_SHARED')\n"
    "lib = sysconfig.get_config_var('LDLIBRARY') or ''\n"
    "libdir = sysconfig.get_config_var('LIBDIR') or ''\n"
    "print(json.dumps({'executable': sys.executable, 'prefix': sys.prefix,\n"
    "                  'base_prefix': sys.base_prefix, 'path': sys.path,\n"
    "                  'libpython': f'{libdir}/{lib}' if shared and lib and libdir else ''}))\n"
)


@dataclass(frozen=True)
class Runtime:
    """What to make visible inside: folders and files bound read-only at their own paths,
    and links re-made as links (path -> link text)."""

    dirs: tuple[str, ...]
    files: tuple[str, ...]
    links: tuple[tuple[str, str], ...]


def _ask(python: str) -> dict:
    try:
        done = subprocess.run([python, "-I", "-c", _ASK], env={}, capture_output=True, text=True,
                              timeout=60, check=True)
        return json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise GraderFault(f"the sandbox interpreter {python} does not run",
                          detail=str(exc)) from exc


def _chain(path: str, links: dict[str, str], files: set[str]) -> None:
    """Record ``path`` as the loader (or exec) reaches it: each link on the way, the real file."""
    for _ in range(40):
        parent = os.path.realpath(os.path.dirname(path))
        path = os.path.join(parent, os.path.basename(path))
        if not os.path.islink(path):
            if os.path.isfile(path):
                files.add(path)
            return
        text = os.readlink(path)
        links[path] = text
        path = os.path.normpath(os.path.join(parent, text))


def _ldd(paths: list[str]) -> set[str]:
    """Every shared object ``ldd`` resolves for ``paths`` (absolute loader paths)."""
    found: set[str] = set()
    for start in range(0, len(paths), LDD_BATCH):
        try:
            done = subprocess.run(["ldd", *paths[start:start + LDD_BATCH]], env={"LC_ALL": "C"},
                                  capture_output=True, text=True, timeout=300, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise GraderFault(f"cannot list the sandbox's shared libraries with ldd: {exc}") from exc
        for line in done.stdout.splitlines():
            match = _LDD_LINE.match(line)
            if match:
                found.add(match.group(1))
    return found


def _shared_objects(folder: str) -> list[str]:
    found = []
    for root, _dirs, names in os.walk(folder):
        for name in names:
            if ".so" in name and (name.endswith(".so") or ".so." in name):
                path = os.path.join(root, name)
                if os.path.isfile(path) and not os.path.islink(path):
                    found.append(path)
    return sorted(found)


def _stamp(paths: list[str]) -> str:
    """A key that changes when any scanned folder or file changes (modification times)."""
    digest = hashlib.sha256()
    for path in paths:
        try:
            digest.update(f"{path}\0{os.stat(path).st_mtime_ns}\0".encode())
        except OSError:
            digest.update(f"{path}\0-\0".encode())
    return digest.hexdigest()


def _watched(tops: list[str], dirs: tuple[str, ...], library_dirs: list[str]) -> list[str]:
    """What the cache's stamp covers: the interpreter and each folder on its path with every
    entry directly in it (installing, upgrading or removing a package adds or replaces one),
    and every folder that held a shared object when it was scanned (a library replaced in
    place changes its folder). Cheap: no walk over the whole tree (13,000 folders for torch)."""
    watched = set(tops) | set(library_dirs)
    for folder in dirs:
        try:
            with os.scandir(folder) as entries:
                watched.update(entry.path for entry in entries)
        except OSError:
            continue
    return sorted(watched)


def _is_under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


@functools.cache
def runtime_for(python: str) -> Runtime:
    """The minimal runtime of ``python`` (see the module docstring); cached per interpreter."""
    info = _ask(python)
    dirs = tuple(p for p in dict.fromkeys(info["path"])
                 if isinstance(p, str) and p.startswith("/") and os.path.isdir(p))
    tops: list[str] = [python, info["executable"], *dirs]
    if info["prefix"] != info["base_prefix"]:
        tops.append(os.path.join(info["prefix"], "pyvenv.cfg"))
    if info["libpython"]:
        tops.append(info["libpython"])
    cache = CACHE_DIR / (hashlib.sha256(python.encode()).hexdigest()[:16] + ".json")
    try:
        cached = json.loads(cache.read_text())
        if cached.get("stamp") == _stamp(_watched(tops, dirs, cached["library_dirs"])):
            return Runtime(tuple(cached["dirs"]), tuple(cached["files"]),
                           tuple((a, b) for a, b in cached["links"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    links: dict[str, str] = {}
    files: set[str] = set()
    for top in (python, info["executable"]):
        _chain(top, links, files)
    for extra in tops[len(dirs) + 2:]:  # pyvenv.cfg, libpython
        if os.path.exists(extra):
            _chain(extra, links, files)
    objects = [*sorted(files)]
    for folder in dirs:
        objects += _shared_objects(folder)
    library_dirs = sorted({os.path.dirname(o) for o in objects})
    for lib in sorted(_ldd(objects)):
        _chain(lib, links, files)
    if os.path.exists("/etc/ld.so.cache"):
        files.add("/etc/ld.so.cache")
    # A folder inside another bound one comes with it (lib-dynload inside the stdlib).
    bound = tuple(d for d in dirs if not any(d != o and _is_under(d, (o,)) for o in dirs))
    covered = (*bound, *(os.path.realpath(d) for d in bound))
    runtime = Runtime(
        dirs=bound,
        files=tuple(sorted(f for f in files if not _is_under(f, covered))),
        links=tuple(sorted((k, v) for k, v in links.items() if not _is_under(k, covered))),
    )
    if os.geteuid() == 0:
        try:
            CACHE_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
            partial = cache.with_suffix(f".{os.getpid()}.partial")
            partial.write_text(json.dumps({"python": python, "library_dirs": library_dirs,
                                           "stamp": _stamp(_watched(tops, dirs, library_dirs)),
                                           "dirs": runtime.dirs, "files": runtime.files,
                                           "links": runtime.links}))
            partial.replace(cache)
        except OSError:
            pass
    return runtime
