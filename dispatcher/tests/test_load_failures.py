"""A task that cannot be loaded or initialised fails with one line naming the task and the place
in its own code (issue 21: not a 45-line traceback headed by the wrong message)."""

from fusionizer_dispatcher import TaskError

from .support import ArtifactTestCase

GOOD = {"main.py": "def handler(context, event):\n    return 'ok'\n"}


class LoadFailureTest(ArtifactTestCase):
    def failure(self, tasks, **kw):
        with self.assertRaises(TaskError) as caught:
            self.load(tasks, **kw)
        exc = caught.exception
        self.assertNotIn("\n", exc.reason)
        self.assertEqual(str(exc), "task `{0}`: {1}".format(exc.task, exc.reason))
        return exc

    def test_a_syntax_error_names_the_file_line_and_column(self):
        exc = self.failure({"good": GOOD, "b": {"main.py": "\ndef handler(context, event)\n    pass\n"}})
        self.assertEqual(exc.task, "b")
        self.assertTrue(exc.reason.startswith("cannot import handler `main:handler`: main.py:2:"),
                        exc.reason)
        self.assertIn(": SyntaxError: ", exc.reason)

    def test_an_import_error_names_the_task_file_where_it_was_raised(self):
        exc = self.failure({"b": {
            "main.py": "import helpers\n\ndef handler(context, event):\n    return 1\n",
            "helpers.py": "x = 1\nimport no_such_module_anywhere\n",
        }})
        self.assertEqual(
            exc.reason,
            "cannot import handler `main:handler`: helpers.py:2: ModuleNotFoundError: "
            "No module named 'no_such_module_anywhere'",
        )

    def test_a_missing_handler_says_so(self):
        exc = self.failure({"b": {"main.py": "def handle(context, event):\n    return 1\n"}})
        self.assertEqual(exc.reason, "handler `main:handler`: module `main` defines no `handler`")

    def test_a_raising_init_context_names_its_line(self):
        exc = self.failure({"b": {"main.py": (
            "def init_context(context):\n    raise KeyError('db')\n\n"
            "def handler(context, event):\n    return 1\n")}})
        self.assertEqual(exc.reason, "`init_context` failed: main.py:2: KeyError: 'db'")

    def test_an_async_init_context_names_its_line_too(self):
        exc = self.failure({"b": {"main.py": (
            "async def init_context(context):\n    raise ValueError('no\\nconfig')\n\n"
            "def handler(context, event):\n    return 1\n")}})
        self.assertEqual(exc.reason, "`init_context` failed: main.py:2: ValueError: no config")
