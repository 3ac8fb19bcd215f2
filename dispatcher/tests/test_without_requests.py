"""A fused function made only of Nuclio-native tasks must not need `requests` at run time."""

import os
import subprocess
import sys
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


class WithoutRequestsTest(unittest.TestCase):
    def test_dispatcher_imports_without_requests(self):
        env = dict(os.environ, PYTHONPATH=DISPATCHER_DIR)
        done = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True,
                              text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout.strip(), "ok")


if __name__ == "__main__":
    unittest.main()
