"""Routing: the `Task-Name` header, cron events in both of Nuclio's cron modes, non-HTTP
triggers by name, a single task, the HTTP path, and the 400 that says how to address a task."""

import nuclio_sdk

from fusionizer_dispatcher import TaskError

from .support import ArtifactTestCase, event

ECHO = """
def handler(context, event):
    return {"task": %r, "path": event.path, "body": event.body if isinstance(event.body, dict) else
            event.body.decode("utf-8", "replace"), "trigger": [event.trigger.kind, event.trigger.name]}
"""


def echo_task(name):
    return {"main.py": ECHO % name}


TASKS = {"taska": echo_task("taska"), "taskb": echo_task("taskb")}
KAFKA = {"kafka-orders": "taska", "nats-audit": "taskb"}


def cron_event(task, trigger=("cron", "cron-taskb"), body=b"tick", path="", method=""):
    """An event as the cron trigger builds it in processor mode (`pkg/processor/trigger/cron/
    event.go`): the trigger's `attributes.event` body, path, method and headers as written."""
    return nuclio_sdk.Event(body=body, content_type="", headers={"Task-Name": task},
                            method=method, path=path, trigger=nuclio_sdk.TriggerInfo(*trigger))


class RoutingTest(ArtifactTestCase):
    def test_cron_event_in_processor_mode_routes_by_its_header(self):
        dispatcher = self.load(TASKS, triggers=KAFKA)
        result = dispatcher.handler(self.context, cron_event("taskb"))
        self.assertEqual(result["task"], "taskb")
        self.assertEqual(result["trigger"], ["cron", "cron-taskb"])
        self.assertEqual(result["body"], "tick")

    def test_cron_event_in_kube_mode_arrives_on_the_http_trigger_with_its_header(self):
        # `pkg/platform/kube/functionres/lazy.go`: the CronJob curls the function's HTTP trigger
        # with the event's headers plus `X-Nuclio-Invoke-Trigger: cron` and `X-Nuclio-Target`
        dispatcher = self.load(TASKS, triggers=KAFKA)
        cron = event(None, b"tick", headers={"Task-Name": "taskb", "X-Nuclio-Invoke-Trigger": "cron",
                                             "X-Nuclio-Target": "fn", "User-Agent": "curl/8.5.0"},
                     path="/", trigger=("http", "default-http"))
        result = dispatcher.handler(self.context, cron)
        self.assertEqual((result["task"], result["trigger"]), ("taskb", ["http", "default-http"]))

    def test_header_less_http_event_routes_by_its_first_path_segment(self):
        dispatcher = self.load(TASKS)
        for path in ("/taskb", "/taskb/", "/taskb/orders/7", "taskb"):
            result = dispatcher.handler(self.context, event(None, b"x", path=path,
                                                            trigger=("http", "default-http")))
            self.assertEqual(result["task"], "taskb", path)
            self.assertEqual(result["path"], path)
            self.assertEqual(dispatcher.last_task, "taskb")

    def test_the_header_wins_over_the_path(self):
        dispatcher = self.load(TASKS)
        result = dispatcher.handler(self.context, event("taska", b"x", path="/taskb"))
        self.assertEqual(result["task"], "taska")

    def test_path_routing_is_for_the_http_trigger_only(self):
        dispatcher = self.load(TASKS, triggers=KAFKA)
        unmapped = event(None, b"x", path="/taskb", trigger=("kafka-cluster", "other-topic"))
        response = dispatcher.handler(self.context, unmapped)
        self.assertEqual(response.status_code, 400)

    def test_kafka_event_routes_by_its_trigger_name(self):
        dispatcher = self.load(TASKS, triggers=KAFKA)
        kafka = nuclio_sdk.Event(body=b"order-1", headers={}, path="", trigger=nuclio_sdk.TriggerInfo(
            "kafka-cluster", "kafka-orders"))
        self.assertEqual(dispatcher.handler(self.context, kafka)["task"], "taska")
        nats = nuclio_sdk.Event(body=b"audit", trigger=nuclio_sdk.TriggerInfo("nats", "nats-audit"))
        self.assertEqual(dispatcher.handler(self.context, nats)["task"], "taskb")

    def test_trigger_name_comes_from_the_context_when_the_event_has_none(self):
        # Nuclio runs one wrapper per worker of a trigger and names it on the command line
        # (`_nuclio_wrapper.py --trigger-kind/--trigger-name`), which the Context carries
        dispatcher = self.load(TASKS, triggers=KAFKA,
                               trigger=nuclio_sdk.TriggerInfo("kafka-cluster", "kafka-orders"))
        bare = nuclio_sdk.Event(body=b"order-2")
        self.assertEqual(dispatcher.handler(self.context, bare)["task"], "taska")

    def test_undecoded_event_strings_route_too(self):
        # without --decode-event-strings the wrapper hands bytes (`nuclio_sdk/event.py`,
        # `_from_parsed_data_bytes`)
        dispatcher = self.load(TASKS, triggers=KAFKA)
        raw = nuclio_sdk.Event(body=b"x", headers={b"Task-Name": b"taskb"}, path=b"/",
                               trigger=nuclio_sdk.TriggerInfo(b"http", b"default-http"))
        self.assertEqual(dispatcher.handler(self.context, raw)["task"], "taskb")
        raw = nuclio_sdk.Event(body=b"x", headers={}, path=b"",
                               trigger=nuclio_sdk.TriggerInfo(b"kafka-cluster", b"kafka-orders"))
        self.assertEqual(dispatcher.handler(self.context, raw)["task"], "taska")

    def test_a_single_task_gets_every_event(self):
        dispatcher = self.load({"solo": echo_task("solo")})
        for ev in (event(None, b"x", path="/"), event(None, b"x", path="/elsewhere"),
                   nuclio_sdk.Event(body=b"x", trigger=nuclio_sdk.TriggerInfo("kafka-cluster", "t")),
                   cron_event("solo")):
            self.assertEqual(dispatcher.handler(self.context, ev)["task"], "solo")

    def test_unaddressed_event_is_400_listing_the_ways_to_address_a_task(self):
        dispatcher = self.load(TASKS, function="shop", triggers=KAFKA)
        response = dispatcher.handler(self.context, event(None, b"x", path="/", trigger=("http", "web")))
        self.assertIsInstance(response, nuclio_sdk.Response)
        self.assertEqual((response.status_code, response.content_type), (400, "text/plain"))
        body = response.body
        self.assertIn("`shop`", body)
        self.assertIn("`taska`, `taskb`", body)
        self.assertIn("the header `Task-Name`, e.g. `Task-Name: taska`", body)
        self.assertIn("the path `/<task>` on the HTTP trigger, e.g. `/taska`", body)
        self.assertIn("`kafka-orders` -> `taska`, `nats-audit` -> `taskb`", body)
        self.assertIn("trigger `web` of kind `http`, path `/`", body)
        self.assertIsNone(dispatcher.last_task)

    def test_400_says_when_no_trigger_is_mapped(self):
        dispatcher = self.load(TASKS)
        response = dispatcher.handler(self.context, event(None, b"x", path="/nope"))
        self.assertEqual(response.status_code, 400)
        self.assertIn("this function maps none", response.body)

    def test_a_header_naming_no_task_is_still_404(self):
        dispatcher = self.load(TASKS, triggers=KAFKA)
        response = dispatcher.handler(self.context, event("nope", b"x", path="/taskb"))
        self.assertEqual(response.status_code, 404)
        self.assertIn("`nope`", response.body)

    def test_a_trigger_mapped_to_an_unknown_task_fails_at_load(self):
        with self.assertRaises(TaskError) as caught:
            self.load(TASKS, triggers={"kafka-orders": "taskz"})
        self.assertEqual(caught.exception.task, "taskz")
        self.assertIn("kafka-orders", str(caught.exception))
