"""fusionizer's runtime inside every fused Nuclio function.

`Dispatcher` routes each event to its task (the `Task-Name` header, else the trigger it came
from, else the only task, else the HTTP path `/<task>`) and runs calls between tasks of the same
function in-process, with the semantics of the HTTP call they replace. `worker` plays Nuclio's
wrapper for fusionizer's local platform. `_contract` holds every name shared with the Rust side.

Runtime dependencies: the standard library, `nuclio_sdk` (0.5.13 on Nuclio 1.14 images, 0.6.x
locally; only APIs common to both are used) and `requests`.

Known limits, by design:
- A task's absolute imports of its own modules are redirected per import statement (see
  `_imports`); `importlib.import_module("utils")` from task code is not, and task modules see
  `__name__ == "fusionizer_tasks.<task>.<module>"`.
- An async sibling called through the synchronous `call_function`/`requests_session` from inside a
  running event loop (Nuclio's asyncio wrapper) runs on a helper thread's loop while the caller
  blocks, as the HTTP call would; it cannot use objects bound to the caller's loop.
- Relative file paths in task code resolve against the worker's working directory (the artifact
  root), not the task directory; use `os.path.dirname(__file__)`.
"""

from .dispatcher import Dispatcher, TaskError, current_task

__all__ = ["Dispatcher", "TaskError", "current_task"]
