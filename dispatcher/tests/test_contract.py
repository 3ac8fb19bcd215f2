"""`_contract.py`: the names shared with the Rust side, in the one form its Rust test parses, and
used by the rest of the package instead of literals."""

import ast
import os
import re
import unittest

from fusionizer_dispatcher import _contract

from .support import PACKAGE_DIR

CONTRACT = os.path.join(PACKAGE_DIR, "_contract.py")
# the Rust test's regex, one constant per line
LINE = re.compile(r'^([A-Z][A-Z0-9_]*) = "([^"\\]*)"$')
# names whose values are distinctive enough that a quoted literal elsewhere means a missed use
SHARED_PREFIXES = ("HEADER_", "ENV_", "ENTRY_", "WORKER_", "DEFAULT_", "DISPATCHER_", "TASKS_")


def constants():
    with open(CONTRACT) as source:
        text = source.read()
    module = ast.parse(text)
    body = module.body
    docstring = ast.get_docstring(module)
    assert docstring, "_contract.py has a module docstring"
    found = {}
    lines = text.splitlines()
    code_start = body[1].lineno if len(body) > 1 else len(lines) + 1
    for number, line in enumerate(lines[code_start - 1:], code_start):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = LINE.match(line)
        assert match, "line {0} is not `NAME = \"value\"`: {1!r}".format(number, line)
        assert match.group(1) not in found, "{0} defined twice".format(match.group(1))
        found[match.group(1)] = match.group(2)
    return found, body


class ContractTest(unittest.TestCase):
    def test_every_statement_is_one_plain_string_constant(self):
        found, body = constants()
        self.assertGreater(len(found), 10)
        self.assertEqual(len(body) - 1, len(found), "only the docstring and NAME = \"value\" lines")
        for statement in body[1:]:
            self.assertIsInstance(statement, ast.Assign)
            self.assertIsInstance(statement.value, ast.Constant)
            self.assertIsInstance(statement.value.value, str)
        for name, value in found.items():
            self.assertEqual(getattr(_contract, name), value)

    def test_the_wire_names(self):
        found, _ = constants()
        expected = {
            "HEADER_TASK_NAME": "Task-Name", "HEADER_CALLER": "X-Fusionizer-Caller",
            "HEADER_SERVER_ADDRESS": "Fusionizer-Server-Address",
            "HEADER_SERVER_PORT": "Fusionizer-Server-Port", "ENV_PROXY_URL": "FUSIONIZER_PROXY_URL",
            "ENV_FUNCTION": "FUSIONIZER_FUNCTION", "ENTRY_MODULE": "_fusionizer_entry",
            "ENTRY_HANDLER": "handler", "TASKS_DIR": "fusionizer_tasks",
            "DISPATCHER_PACKAGE": "fusionizer_dispatcher", "FRAME_EVENT": "E", "FRAME_QUIT": "Q",
            "FRAME_READY": "S", "FRAME_INIT_FAILED": "F", "FRAME_RESPONSE": "R", "FRAME_LOG": "L",
        }
        for name, value in expected.items():
            self.assertEqual(found.get(name), value, name)
        self.assertEqual(found["WORKER_MODULE"], found["DISPATCHER_PACKAGE"] + ".worker")

    def test_the_package_uses_the_constants_not_literals(self):
        found, _ = constants()
        # `handler` and `fusionizer_dispatcher` are also attribute names of the entry's handler
        shared = {name: value for name, value in found.items() if name.startswith(SHARED_PREFIXES)
                  and name not in ("ENTRY_HANDLER", "DISPATCHER_PACKAGE")}
        values = {value: name for name, value in shared.items()}
        for filename in sorted(os.listdir(PACKAGE_DIR)):
            if not filename.endswith(".py") or filename == "_contract.py":
                continue
            with open(os.path.join(PACKAGE_DIR, filename)) as source:
                tree = ast.parse(source.read())
            docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and id(node) not in docstrings:
                    self.assertNotIn(node.value, values, "{0}:{1} spells {2} as a literal".format(
                        filename, node.lineno, values.get(node.value)))
