"""`requests` is not in Nuclio's image: a function needs it only for requests_session-style tasks.

A fused function made only of Nuclio-native tasks must not need it at run time; a task whose
handler takes a `requests_session` fails to load, naming the fix, when its function lacks it.
"""

import os
import subprocess
import sys
import tempfile
import unittest

DISPATCHER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROGRAM = r'''
import sys
sys.modules["requests"] = None  # any `import requests` now raises ImportError
import fusionizer_dispatcher
import fusionizer_dispatcher.dispatcher
assert "requests" not in [m for m in sys.modules if m == "requests" and sys.modules[m] is not None]
print("ok")
'''

LOAD = r'''
import sys
sys.modules["requests"] = None  # as in an environment without `requests`
from fusionizer_dispatcher import Dispatcher, TaskError
root, handler = sys.argv[1], sys.argv[2]
try:
    Dispatcher(function="fn", tasks={"taska": "main:handler"}, root=root)
except TaskError as exc:
    print("TaskError", exc.task, exc)
else:
    print("loaded")
'''


def load_without_requests(source):
    """Loads one task `taska` with `source` as its main.py where `requests` cannot be imported."""
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, "fusionizer_tasks", "taska"))
        with open(os.path.join(root, "fusionizer_tasks", "taska", "main.py"), "w") as out:
            out.write(source)
        env = dict(os.environ, PYTHONPATH=DISPATCHER_DIR)
        done = subprocess.run([sys.executable, "-c", LOAD, root, "main:handler"], env=env,
                              capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(done.stderr)
    return done.stdout.strip()


class WithoutRequestsTest(unittest.TestCase):
    def test_dispatcher_imports_without_requests(self):
        env = dict(os.environ, PYTHONPATH=DISPATCHER_DIR)
        done = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True,
                              text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout.strip(), "ok")

    def test_a_native_task_loads_without_requests(self):
        self.assertEqual(load_without_requests("def handler(context, event):\n    return 1\n"),
                         "loaded")

    def test_a_requests_session_task_without_requests_fails_at_load_naming_the_fix(self):
        out = load_without_requests(
            "def handler(context, event, requests_session):\n    return 1\n")
        self.assertTrue(out.startswith("TaskError taska "), out)
        self.assertIn("`requests` is not installed", out)
        self.assertIn("add `pip install requests` to the task's build commands", out)


if __name__ == "__main__":
    unittest.main()
