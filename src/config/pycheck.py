"""fusionizer's check of the tasks' Python: compiles files to syntax trees, never runs them.

Run by `src/config/pycheck.rs` as `python -I -B -c <this file> REQUEST`, where REQUEST is the path
of a JSON file:

    {"files": [{"path": str, "feature": minor or null}],
     "functions": [{"path": str, "name": str}]}

It prints one JSON object:

    {"version": [major, minor],
     "files": [{"error": ERROR or null, "feature_error": ERROR or null}],
     "functions": [BINDING]}

ERROR is {"line", "column", "message"} (1-based; column 0 when unknown). "feature_error" is
what `ast.parse(..., feature_version=(3, feature))` says of a file that parses with this
interpreter's own grammar, when that Python is older than this one: a check for syntax newer than
that Python, which Python's documentation calls a "best-effort" attempt. BINDING says how `name` is bound at the module's top level
(also inside top-level `if`/`try`/`with`/`for`/`while` blocks, the last binding winning):
{"kind": "def" | "other" | "missing" | "unknown", "line", "column", "decorated",
"positional", "defaults", "varargs", "kwonly_required": [names], "functions": [every top-level
function name]}. "unknown" is a module that does not parse, one with `from x import *`, or one
whose module-level `__getattr__` may provide the name.
"""

import ast
import json
import sys
import warnings


def _error(exc):
    if isinstance(exc, SyntaxError):
        message = exc.msg or "invalid syntax"
        return {"line": exc.lineno or 0, "column": exc.offset or 0, "message": message}
    return {"line": 0, "column": 0, "message": "{0}: {1}".format(type(exc).__name__, exc)}


def _parse(path, feature=None):
    with open(path, "rb") as f:
        source = f.read()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if feature is None:
            return ast.parse(source, path)
        return ast.parse(source, path, feature_version=(3, feature))


def _check_file(entry):
    result = {"error": None, "feature_error": None}
    try:
        _parse(entry["path"])
    except Exception as exc:  # SyntaxError, ValueError (NUL bytes), decoding, reading
        result["error"] = _error(exc)
        return result
    feature = entry.get("feature")
    if feature is not None and feature < sys.version_info[1]:
        try:
            _parse(entry["path"], feature)
        except Exception as exc:
            result["feature_error"] = _error(exc)
    return result


_BLOCKS = tuple(
    getattr(ast, name)
    for name in ("If", "Try", "TryStar", "With", "AsyncWith", "For", "AsyncFor", "While")
    if hasattr(ast, name)
)


def _top_level(body):
    """The module's top-level statements, with those of top-level compound blocks."""
    for node in body:
        yield node
        if not isinstance(node, _BLOCKS):
            continue
        for field in ("body", "orelse", "finalbody"):
            yield from _top_level(getattr(node, field, None) or [])
        for handler in getattr(node, "handlers", None) or []:
            yield from _top_level(handler.body)


def _targets(node):
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
    elif isinstance(node, (ast.For, ast.AsyncFor)):
        targets = [node.target]
    elif isinstance(node, (ast.With, ast.AsyncWith)):
        targets = [item.optional_vars for item in node.items if item.optional_vars is not None]
    else:
        return []
    names = []
    for target in targets:
        for sub in ast.walk(target):
            if isinstance(sub, ast.Name):
                names.append(sub.id)
    return names


def _binding(entry):
    result = {"kind": "unknown", "functions": []}
    try:
        tree = _parse(entry["path"])
    except Exception:
        return result
    name = entry["name"]
    found = None
    functions = []
    for node in _top_level(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions.append(node.name)
            if node.name == name:
                found = node
        elif isinstance(node, ast.ClassDef):
            if node.name == name:
                found = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    return dict(result, functions=sorted(set(functions)))
                bound = alias.asname or alias.name.partition(".")[0]
                if bound == name:
                    found = node
        elif name in _targets(node):
            found = node
    result["functions"] = sorted(set(functions))
    if found is None and "__getattr__" in functions:
        return result  # a module `__getattr__` (PEP 562) may provide any name
    if found is None:
        result["kind"] = "missing"
        return result
    result["line"] = found.lineno
    result["column"] = found.col_offset + 1
    if not isinstance(found, (ast.FunctionDef, ast.AsyncFunctionDef)):
        result["kind"] = "other"
        return result
    args = found.args
    positional = list(getattr(args, "posonlyargs", [])) + list(args.args)
    result.update({
        "kind": "def",
        "decorated": bool(found.decorator_list),
        "positional": len(positional),
        "defaults": len(args.defaults),
        "varargs": args.vararg is not None,
        "kwonly_required": [
            arg.arg for arg, default in zip(args.kwonlyargs, args.kw_defaults) if default is None
        ],
    })
    return result


def main(argv):
    with open(argv[1], "rb") as f:
        request = json.loads(f.read().decode("utf-8"))
    answer = {
        "version": list(sys.version_info[:2]),
        "files": [_check_file(entry) for entry in request.get("files", [])],
        "functions": [_binding(entry) for entry in request.get("functions", [])],
    }
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
