"""Per-task module namespaces, so two fused tasks can both ship `main.py` and `utils.py`.

Each task directory is mounted as its own package (`fusionizer_tasks.<task>`), so its `main.py`
becomes `fusionizer_tasks.<task>.main` and never collides with another task's `main.py`. Task
code was written for Nuclio, where its directory is on `sys.path` and `import utils` is an
absolute import; an absolute import cannot tell which task asked. So `builtins.__import__` is
wrapped: when the importing module lives inside a task package and the imported top-level name
is a module of that task's directory, the import is redirected to the task's package. Because the
decision is made per import statement from the importer's globals, lazy imports inside handlers
(`def handler(...): import utils`) resolve the same way, at any time.

Limits (documented in the package docstring): `importlib.import_module("utils")` and
`__import__` calls made without the task module's globals are not redirected (use an `import`
statement, or a relative import), and modules see `__name__ == "fusionizer_tasks.<task>.utils"`
instead of `"utils"`.
"""

import builtins
import importlib
import importlib.machinery
import os
import re
import sys
import types

from . import _contract

# the artifact directory of task directories is also the package they are mounted under
ROOT_PACKAGE = _contract.TASKS_DIR

# "fusionizer_tasks.taska" -> frozenset of top-level module names found in taska's directory.
_TASK_PACKAGES = {}
# First dotted components of every task package ("fusionizer_tasks", ...).
_ROOTS = set()
_original_import = builtins.__import__

_SUFFIXES = tuple(importlib.machinery.SOURCE_SUFFIXES + importlib.machinery.EXTENSION_SUFFIXES)


def _task_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level == 0 and globals:
        importer = globals.get("__name__")
        if importer:
            root, _, rest = importer.partition(".")
            if root in _ROOTS:
                package = root + "." + rest.partition(".")[0]
                local = _TASK_PACKAGES.get(package)
                if local is not None:
                    top = name.partition(".")[0]
                    if top in local:
                        module = _original_import(package + "." + name, globals, locals, fromlist, 0)
                        return module if fromlist else sys.modules[package + "." + top]
    return _original_import(name, globals, locals, fromlist, level)


_installed = False


def _install_hook():
    """Wraps `builtins.__import__` once per process. Only once: a wrapper installed over ours
    later (another copy of this package, a library's import hook) keeps calling ours, and
    wrapping it in turn would make the two call each other forever."""
    global _original_import, _installed
    if not _installed:
        _installed = True
        _original_import = builtins.__import__
        builtins.__import__ = _task_import


def _local_names(directory):
    """Top-level module names a task's directory provides when it is on `sys.path`."""
    names = set()
    for entry in os.listdir(directory):
        path = os.path.join(directory, entry)
        if os.path.isdir(path):
            if entry.isidentifier() and any(
                child.endswith(".py") for child in os.listdir(path)
            ):
                names.add(entry)
        elif entry.endswith(_SUFFIXES):
            name = entry.partition(".")[0]
            if name.isidentifier():
                names.add(name)
    return frozenset(names)


def _package(name, path):
    module = types.ModuleType(name)
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [path]
    module.__spec__ = spec
    module.__path__ = [path]
    module.__package__ = name
    sys.modules[name] = module
    return module


def _claim_root(path):
    """The root package for tasks under `path`; a second root in one process gets a suffix."""
    index = 0
    while True:
        name = ROOT_PACKAGE if index == 0 else "{0}_{1}".format(ROOT_PACKAGE, index)
        existing = sys.modules.get(name)
        if existing is None:
            return _package(name, path)
        if list(getattr(existing, "__path__", ())) == [path]:
            return existing
        index += 1


def mount_tasks(root, tasks):
    """Mount each task directory `<root>/fusionizer_tasks/<task>` as its own package.

    Returns {task: package name}. Installs the import redirection once per process.
    """
    tasks_dir = os.path.join(os.path.abspath(root), ROOT_PACKAGE)
    root_package = _claim_root(tasks_dir)
    packages = {}
    used = set()
    for task in sorted(tasks):
        ident = re.sub(r"\W", "_", task)
        if not ident or ident[0].isdigit():
            ident = "_" + ident
        while ident in used:
            ident += "_"
        used.add(ident)
        name = root_package.__name__ + "." + ident
        directory = os.path.join(tasks_dir, task)
        if not os.path.isdir(directory):
            raise FileNotFoundError(
                "task `{0}` has no directory at {1}: rebuild the artifact".format(task, directory)
            )
        package = sys.modules.get(name)
        if package is None or list(getattr(package, "__path__", ())) != [directory]:
            package = _package(name, directory)
            setattr(root_package, ident, package)
        _TASK_PACKAGES[name] = _local_names(directory)
        packages[task] = name
    _ROOTS.add(root_package.__name__)
    _install_hook()
    return packages


def task_directory(package):
    """The directory a task package (from `mount_tasks`) is mounted from."""
    module = sys.modules.get(package)
    paths = list(getattr(module, "__path__", ())) if module is not None else []
    return paths[0] if paths else None


def import_task_module(package, module_name):
    """Import `module_name` (dotted, relative to the task directory) inside the task package."""
    return importlib.import_module(package + "." + module_name)
