"""Tests for the fake nuctl (tests/fake_nuctl/nuctl) against what nuclio 1.14.1's source does.

Run from the repository root:
    python3 -m unittest discover -s tests/fake_nuctl -p 'test_*.py'

Each test gets its own temporary FAKE_NUCTL_DIR and HOME, runs the fake as a subprocess with a
scrubbed environment, and talks only to loopback addresses.
"""

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(HERE, "nuctl")
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
FIXTURE = os.path.join(ROOT, "tests", "it", "fixtures", "nuctl_get_1.14.1.json")
# The function.yaml fusionizer wrote for that function (also read by src/platform/nuctl/function.rs).
FIXTURE_FUNCTION_YAML = os.path.join(ROOT, "tests", "it", "fixtures", "nuctl_get_1.14.1.function.yaml")

FUNCTION_YAML = """\
apiVersion: "nuclio.io/v1beta1"
kind: NuclioFunction
metadata:
  name: {name}
  labels:
    fusionizer.io/managed-by: fusionizer
    fusionizer.io/project: {project}
  annotations:
    fusionizer.io/digest: sha256:0123
spec:
  runtime: "python:3.11"
  handler: main:handler
  env:
  - name: GREETING
    value: hello, world=1
  triggers:
    http:
      kind: http
      name: http
      numWorkers: 2
      attributes: {attributes}
"""

HANDLER = "def handler(context, event):\n    return 'ok from ' + context.trigger.name\n"


def wait_for(what, condition, timeout=30.0):
    """Polls `condition` until it returns something truthy, or fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


UPSTREAM = os.environ.get("FUSIONIZER_NUCLIO_UPSTREAM")


def sdk_python():
    """An interpreter with nuclio_sdk for served functions, or None.

    With FUSIONIZER_NUCLIO_UPSTREAM set the fake serves functions in Nuclio's own wrapper, which
    needs msgpack as well; an interpreter with both must then exist (`.venv-nuclio`, which
    scripts/test builds), or the test fails rather than skips."""
    modules = "import nuclio_sdk, msgpack" if UPSTREAM else "import nuclio_sdk"
    candidates = [os.environ.get("FAKE_NUCTL_PYTHON")]
    if UPSTREAM:
        candidates.append(os.path.join(ROOT, ".venv-nuclio", "bin", "python"))
    candidates += [os.path.join(ROOT, ".venv", "bin", "python"), sys.executable]
    for candidate in candidates:
        if candidate and os.path.exists(candidate):
            probe = subprocess.run([candidate, "-c", modules], capture_output=True, timeout=60)
            if probe.returncode == 0:
                return candidate
    if UPSTREAM:
        raise AssertionError("FUSIONIZER_NUCLIO_UPSTREAM is set but no interpreter has nuclio_sdk "
                             "and msgpack (tried %s): run scripts/test, which builds .venv-nuclio"
                             % [c for c in candidates if c])
    return None


class FakeTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="fake-nuctl-test-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.state_dir = os.path.join(self.tmp, "state")
        self.home = os.path.join(self.tmp, "home")
        os.makedirs(self.home)
        self.env = {
            k: v for k, v in os.environ.items()
            if not k.startswith(("NUCTL_", "FAKE_NUCTL_", "KUBERNETES_", "NUCLIO_"))
            and k != "KUBECONFIG"
        }
        self.env.update({"FAKE_NUCTL_DIR": self.state_dir, "HOME": self.home})

    # helpers

    def run_fake(self, *args, env=None, cwd=None, timeout=60):
        full_env = dict(self.env)
        full_env.update(env or {})
        return subprocess.run([sys.executable, FAKE] + list(args), env=full_env,
                              cwd=cwd or self.tmp, capture_output=True, text=True,
                              timeout=timeout)

    def ok(self, *args, **kwargs):
        out = self.run_fake(*args, **kwargs)
        self.assertEqual(out.returncode, 0, "%s\nstdout: %s\nstderr: %s"
                         % (args, out.stdout, out.stderr))
        return out

    def fails(self, *args, **kwargs):
        out = self.run_fake(*args, **kwargs)
        self.assertEqual(out.returncode, 1, "%s\nstdout: %s\nstderr: %s"
                         % (args, out.stdout, out.stderr))
        return out

    def function_dir(self, name, project="shop", attributes="{}", yaml_text=None):
        path = os.path.join(self.tmp, "build", name)
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "function.yaml"), "w") as f:
            f.write(yaml_text if yaml_text is not None else FUNCTION_YAML.format(
                name=name, project=project, attributes=attributes))
        with open(os.path.join(path, "main.py"), "w") as f:
            f.write(HANDLER)
        return path

    def deploy(self, name, *flags, platform="local", expect=0, env=None, **kwargs):
        path = self.function_dir(name, **kwargs)
        args = ["deploy", name, "--path", path, "--file", os.path.join(path, "function.yaml"),
                "--platform", platform] + list(flags)
        out = self.run_fake(*args, env=env)
        self.assertEqual(out.returncode, expect, "%s\nstdout: %s\nstderr: %s"
                         % (args, out.stdout, out.stderr))
        return out

    def get_json(self, name=None, platform="local", *flags):
        args = ["get", "function"] + ([name] if name else []) + ["-o", "json", "--platform",
                                                                   platform] + list(flags)
        value = json.loads(self.ok(*args).stdout)
        return value if isinstance(value, list) else [value]

    def state(self):
        with open(os.path.join(self.state_dir, "state.json")) as f:
            return json.load(f)


class EmptyListingsAndLookups(FakeTest):
    """pkg/nuctl/command/get.go: a listing with no match prints the line and returns nil; a
    lookup by NAME returns nuclio.NewErrNotFound, printed alone by cmd/nuctl/main.go."""

    def test_empty_listings_exit_0_with_a_newline(self):
        for platform in ("local", "kube"):
            out = self.ok("get", "function", "-l", "fusionizer.io/project=p", "-o", "json",
                          "--platform", platform, "--namespace", "nuclio")
            self.assertEqual(out.stdout, "No functions found\n")
            self.assertEqual(out.stderr, "")
        # `get project` never lists nothing: initializing a platform creates the `default`
        # project (abstract/platform.go EnsureDefaultProjectExistence)
        out = self.ok("get", "project", "-o", "json", "--platform", "local")
        self.assertEqual(json.loads(out.stdout)["meta"]["name"], "default")

    def test_lookups_by_name_exit_1_without_a_newline(self):
        for platform in ("local", "kube"):
            out = self.fails("get", "function", "missing", "-o", "json", "--platform", platform,
                             "--namespace", "nuclio")
            self.assertEqual(out.stdout, "No functions found")
            self.assertEqual(out.stderr, "")
            out = self.fails("get", "project", "missing", "-o", "json", "--platform", platform,
                             "--namespace", "nuclio")
            self.assertEqual(out.stdout, "No projects found")
            self.assertEqual(out.stderr, "")


class DockerSelectorQuirk(FakeTest):
    """pkg/platform/local/client/store.go GetProjectFunctions filters only by
    nuclio.io/project-name; pkg/platform/kube/client/getter.go passes the selector to the API."""

    def test_local_ignores_every_selector_key_but_the_nuclio_project(self):
        self.deploy("shop-a", project="shop")
        self.deploy("other-b", project="other")
        names = [f["metadata"]["name"] for f in self.get_json(
            None, "local", "-l", "fusionizer.io/project=shop")]
        self.assertEqual(names, ["other-b", "shop-a"])
        names = [f["metadata"]["name"] for f in self.get_json(
            None, "local", "-l", "fusionizer.io/project=nope,nuclio.io/project-name=default")]
        self.assertEqual(names, ["other-b", "shop-a"])
        out = self.ok("get", "function", "-o", "json", "-l", "nuclio.io/project-name=x",
                      "--platform", "local")
        self.assertEqual(out.stdout, "No functions found\n")

    def test_kube_honours_the_selector(self):
        self.deploy("shop-a", "--namespace", "nuclio", platform="kube", project="shop")
        self.deploy("other-b", "--namespace", "nuclio", platform="kube", project="other")
        names = [f["metadata"]["name"] for f in self.get_json(
            None, "kube", "--namespace", "nuclio", "-l", "fusionizer.io/project=shop")]
        self.assertEqual(names, ["shop-a"])
        # a NAME is a plain Get: the selector does not apply
        names = [f["metadata"]["name"] for f in self.get_json(
            "other-b", "kube", "--namespace", "nuclio", "-l", "fusionizer.io/project=shop")]
        self.assertEqual(names, ["other-b"])

    def test_the_backends_are_separate(self):
        self.deploy("shop-a")
        out = self.ok("get", "function", "-o", "json", "--platform", "kube", "--namespace",
                      "nuclio")
        self.assertEqual(out.stdout, "No functions found\n")


class NameLengthOnKube(FakeTest):
    """Service and Deployment are named nuclio-<function> (pkg/platform/kube/types.go); a
    Service name is a 63-character DNS-1035 label, so 56 characters is the longest name."""

    def test_a_56_character_name_deploys_on_kube(self):
        name = "f" * 56
        self.deploy(name, "--namespace", "nuclio", platform="kube")
        self.assertEqual(self.get_json(name, "kube", "--namespace", "nuclio")[0]["status"]
                         ["state"], "ready")

    def test_a_57_character_name_fails_on_kube_with_the_api_server_error(self):
        name = "f" * 57
        out = self.deploy(name, "--namespace", "nuclio", platform="kube", expect=1)
        service = "nuclio-" + name
        problem = ('Service "%s" is invalid: metadata.name: Invalid value: "%s": must be no '
                   "more than 63 characters" % (service, service))
        self.assertTrue(out.stderr.startswith(
            "\nError - NuclioFunction in error state:\n\nError - " + problem + "\n"), out.stderr)
        self.assertIn("\nFailed to wait for function readiness.\n\nPod logs:\nNo pods found for "
                      "nuclio:%s, is replicas set to 0?\n" % name, out.stderr)
        self.assertTrue(out.stderr.endswith(
            "\nFailed to deploy function\n    ...//nuclio/pkg/platform/abstract/platform.go:236\n"),
            out.stderr)
        status = self.get_json(name, "kube", "--namespace", "nuclio")[0]["status"]
        self.assertEqual(status["state"], "error")
        self.assertEqual(status["message"],
                         "NuclioFunction in error state:\n\nError - %s\n"
                         "    ...//nuclio/pkg/platform/kube/functionres/lazy.go:919\n" % problem)

    def test_the_same_name_deploys_on_docker(self):
        name = "f" * 70
        self.deploy(name, platform="local")
        self.assertEqual(self.get_json(name, "local")[0]["status"]["state"], "ready")

    def test_over_63_characters_kube_waits_forever(self):
        # the controller's IsQualifiedName check only logs; nuctl polls without a deadline
        name = "g" * 64
        path = self.function_dir(name)
        proc = subprocess.Popen(
            [sys.executable, FAKE, "deploy", name, "--path", path, "--platform", "kube",
             "--namespace", "nuclio"], env=self.env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)

        def waiting():
            try:
                fn = self.state()["kube"]["functions"]["nuclio"][name]
            except (OSError, KeyError, ValueError):
                return False
            return fn["status"]["state"] == "waitingForResourceConfiguration"

        wait_for("the function to wait for its resources", waiting)
        self.assertIsNone(proc.poll())


class KubeCredentials(FakeTest):
    """With FAKE_NUCTL_CREDENTIALS=1, what kube.NewPlatform builds its REST config from
    (pkg/platform/kube/platform.go NewPlatform, pkg/platform/kube/client/consumer.go
    NewConsumer, pkg/common/k8s.go GetKubeconfigPath and GetClientConfig, client-go v0.29.8
    rest/config.go InClusterConfig): a kubeconfig that loads, else the pod's service account."""

    GET = ("get", "function", "--platform", "kube", "--namespace", "nuclio")

    def in_cluster(self, token=True):
        """The variables of a pod, and a service account directory (with a token, or none)."""
        account = os.path.join(self.tmp, "serviceaccount")
        os.makedirs(account, exist_ok=True)
        if token:
            with open(os.path.join(account, "token"), "w") as f:
                f.write("a-token")
        return {"FAKE_NUCTL_CREDENTIALS": "1", "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                "KUBERNETES_SERVICE_PORT": "6443", "FAKE_NUCTL_SERVICE_ACCOUNT_DIR": account}

    def test_without_a_kubeconfig_outside_a_pod_nuctl_cannot_build_its_client(self):
        out = self.fails(*self.GET, env={"FAKE_NUCTL_CREDENTIALS": "1"})
        self.assertTrue(out.stderr.startswith(
            "\nError - unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and "
            "KUBERNETES_SERVICE_PORT must be defined\n"), out.stderr)
        for line in ("Failed to create REST config\n",
                     "Failed to create a consumer\n    /nuclio/pkg/platform/kube/platform.go:118\n",
                     "Failed to create kube platform\n"
                     "    /nuclio/pkg/platform/factory/factory.go:70\n",
                     "Failed to initialize root\n"):
            self.assertIn(line, out.stderr)

    def test_in_a_pod_the_service_account_is_used(self):
        out = self.ok(*self.GET, env=self.in_cluster())
        self.assertEqual(out.stdout, "No functions found\n")
        with open(os.path.join(self.state_dir, "calls.jsonl")) as f:
            last = json.loads(f.read().splitlines()[-1])
        self.assertNotIn("--kubeconfig", last)

    def test_in_a_pod_without_a_token(self):
        env = self.in_cluster(token=False)
        out = self.fails(*self.GET, env=env)
        token = os.path.join(env["FAKE_NUCTL_SERVICE_ACCOUNT_DIR"], "token")
        self.assertTrue(out.stderr.startswith(
            "\nError - open %s: no such file or directory\n" % token), out.stderr)

    def test_a_kubeconfig_that_loads_wins_and_one_that_does_not_falls_back_to_the_pod(self):
        config = os.path.join(self.tmp, "config")
        with open(config, "w") as f:
            f.write("apiVersion: v1\nkind: Config\nclusters: []\n")
        creds = {"FAKE_NUCTL_CREDENTIALS": "1"}
        self.ok(*self.GET, "--kubeconfig", config, env=creds)
        self.ok(*self.GET, env=dict(creds, KUBECONFIG=config))
        missing = os.path.join(self.tmp, "missing")
        self.fails(*self.GET, "--kubeconfig", missing, env=creds)
        self.ok(*self.GET, "--kubeconfig", missing, env=self.in_cluster())

    def test_unchecked_by_default(self):
        self.ok(*self.GET)


class ReplicaAndTriggerValidation(FakeTest):
    """pkg/platform/abstract/platform.go ValidateFunctionConfig: validateMinMaxReplicas and
    validateTriggers, run after EnrichFunctionConfig, wrapped by ValidateFunctionConfigWithRetry
    and the platform's CreateFunction."""

    def test_min_greater_than_max(self):
        out = self.deploy("a", "--min-replicas", "3", "--max-replicas", "2", expect=1)
        self.assertEqual(out.stdout.count("\n"), 0)  # nothing logged before validation
        self.assertEqual(out.stderr, (
            "\nError - Min replicas must be less than or equal to max replicas\n"
            "    ...//nuclio/pkg/platform/abstract/platform.go:459\n"
            "\nCall stack:\n"
            "Min max replicas validation failed\n"
            "    ...//nuclio/pkg/platform/abstract/platform.go:459\n"
            "Failed to validate a function configuration\n"
            "    ...//nuclio/pkg/platform/abstract/platform.go:516\n"
            "Failed to enrich and validate a function configuration\n"
            "    /nuclio/pkg/platform/local/platform.go:178\n"))

    def test_max_zero_and_min_zero_alone(self):
        out = self.deploy("a", "--max-replicas", "0", expect=1)
        self.assertIn("Error - Max replicas must be greater than zero\n", out.stderr)
        # enrichMinMaxReplicas copies a lone min to max first, so min 0 alone reports max 0
        out = self.deploy("b", "--min-replicas", "0", expect=1)
        self.assertIn("Error - Max replicas must be greater than zero\n", out.stderr)

    def test_trigger_key_must_equal_its_name(self):
        out = self.deploy("a", expect=1, yaml_text=FUNCTION_YAML.format(
            name="a", project="shop", attributes="{}").replace("name: http", "name: web"))
        self.assertIn("\nError - Trigger key and name mismatch (http != web)\n", out.stderr)
        self.assertIn("\nTriggers validation failed\n", out.stderr)

    def test_a_missing_trigger_name_is_filled_from_the_key(self):
        self.deploy("a", yaml_text=FUNCTION_YAML.format(
            name="a", project="shop", attributes="{}").replace("      name: http\n", ""))
        trigger = self.get_json("a")[0]["spec"]["triggers"]["http"]
        self.assertEqual(trigger["name"], "http")

    def test_more_than_one_http_trigger(self):
        text = FUNCTION_YAML.format(name="a", project="shop", attributes="{}") + (
            "    api:\n      kind: http\n      name: api\n")
        out = self.deploy("a", expect=1, yaml_text=text)
        self.assertIn("\nError - There's more than one http trigger (unsupported)\n", out.stderr)

    def test_num_workers_limit(self):
        text = FUNCTION_YAML.format(name="a", project="shop", attributes="{}").replace(
            "numWorkers: 2", "numWorkers: 100001")
        out = self.deploy("a", expect=1, yaml_text=text)
        self.assertIn("\nError - NumWorkers value for http trigger (100001) exceeds the limit "
                      "of 100000\n", out.stderr)

    def test_reserved_name(self):
        out = self.deploy("dlx", expect=1)
        self.assertIn("\nError - Function name dlx is reserved and cannot be used.\n", out.stderr)


class MissingProject(FakeTest):
    """abstract/platform.go validateProjectExists: NewErrPreconditionFailed("Project does not
    exist"); `default` always exists (EnsureDefaultProjectExistence)."""

    def test_deploying_into_a_missing_project(self):
        for platform in ("local", "kube"):
            out = self.deploy("a", "--project-name", "shop", "--namespace", "nuclio",
                              platform=platform, expect=1)
            self.assertEqual(out.stderr, (
                "\nError - Project does not exist\n"
                "    ...//nuclio/pkg/platform/abstract/platform.go:468\n"
                "\nCall stack:\n"
                "Project existence validation failed\n"
                "    ...//nuclio/pkg/platform/abstract/platform.go:468\n"
                "Failed to validate a function configuration\n"
                "    ...//nuclio/pkg/platform/abstract/platform.go:516\n"
                "Failed to enrich and validate a function configuration\n"
                "    /nuclio/pkg/platform/%s/platform.go:%d\n"
                % (platform, 195 if platform == "kube" else 178)))
            self.ok("create", "project", "shop", "--platform", platform, "--namespace", "nuclio")
            self.deploy("a", "--project-name", "shop", "--namespace", "nuclio",
                        platform=platform)

    def test_project_create_is_an_upsert_on_docker_and_a_conflict_on_kube(self):
        self.ok("create", "project", "shop", "--platform", "local")
        self.ok("create", "project", "shop", "--platform", "local")
        self.ok("create", "project", "shop", "--platform", "kube", "--namespace", "nuclio")
        out = self.fails("create", "project", "shop", "--platform", "kube", "--namespace",
                         "nuclio")
        self.assertEqual(out.stderr, (
            '\nError - nuclioprojects.nuclio.io "shop" already exists\n'
            "    /nuclio/pkg/platform/kube/platform.go:711\n"
            "\nCall stack:\nFailed to create project\n"
            "    /nuclio/pkg/platform/kube/platform.go:711\n"))

    def test_project_json_uses_meta(self):
        self.ok("create", "project", "shop", "--description", "d", "--platform", "kube",
                "--namespace", "nuclio")
        out = self.ok("get", "project", "shop", "-o", "json", "--platform", "kube",
                      "--namespace", "nuclio")
        self.assertEqual(json.loads(out.stdout), {
            "meta": {"name": "shop", "namespace": "nuclio"},
            "spec": {"description": "d"}, "status": {}})


class ServiceTypes(FakeTest):
    """pkg/nuctl/command/deploy.go populateHTTPServiceType (--http-trigger-service-type, else
    NUCTL_DEFAULT_SERVICE_TYPE, else pkg/platformconfig/types.go DefaultServiceType ClusterIP);
    pkg/platform/kube/controller/nucliofunction.go populateFunctionInvocationStatus."""

    def kube(self, name, *flags, env=None):
        self.deploy(name, "--namespace", "nuclio", *flags, platform="kube", env=env)
        return self.get_json(name, "kube", "--namespace", "nuclio")[0]

    def test_default_is_cluster_ip_with_internal_urls_only(self):
        fn = self.kube("a")
        self.assertEqual(fn["spec"]["triggers"]["http"]["attributes"]["serviceType"],
                         "ClusterIP")
        self.assertEqual(fn["status"]["internalInvocationUrls"],
                         ["nuclio-a.nuclio.svc.cluster.local:8080"])
        self.assertNotIn("externalInvocationUrls", fn["status"])  # empty, omitempty
        self.assertNotIn("httpPort", fn["status"])

    def test_node_port_from_the_flag_and_the_environment(self):
        fn = self.kube("a", "--http-trigger-service-type", "NodePort")
        port = fn["status"]["httpPort"]
        self.assertTrue(30000 <= port <= 32767, port)
        # the default Helm chart leaves NUCLIO_CONTROLLER_EXTERNAL_IP_ADDRESSES empty
        self.assertEqual(fn["status"]["externalInvocationUrls"], [":%d" % port])
        fn = self.kube("b", env={"NUCTL_DEFAULT_SERVICE_TYPE": "NodePort",
                                 "FAKE_NUCTL_CONTROLLER_EXTERNAL_IP_ADDRESSES":
                                     "127.0.0.7,127.0.0.8"})
        self.assertEqual(fn["spec"]["triggers"]["http"]["attributes"]["serviceType"], "NodePort")
        self.assertEqual(fn["status"]["externalInvocationUrls"],
                         ["127.0.0.8:%d" % fn["status"]["httpPort"]])  # the last address wins
        fn = self.kube("c", "--http-trigger-service-type", "ClusterIP",
                       env={"NUCTL_DEFAULT_SERVICE_TYPE": "NodePort"})
        self.assertNotIn("externalInvocationUrls", fn["status"])

    def test_a_trigger_attribute_wins_over_the_flag(self):
        self.deploy("a", "--namespace", "nuclio", "--http-trigger-service-type", "ClusterIP",
                    platform="kube", attributes="{serviceType: NodePort, port: 31234}")
        fn = self.get_json("a", "kube", "--namespace", "nuclio")[0]
        self.assertEqual(fn["status"]["httpPort"], 31234)

    def test_unsupported_service_type(self):
        out = self.deploy("a", "--namespace", "nuclio", "--http-trigger-service-type",
                          "LoadBalancer", platform="kube", expect=1)
        self.assertIn("\nError - Unsupported service type LoadBalancer\n", out.stderr)
        self.assertIn("\nService type validation failed\n", out.stderr)

    def test_docker_ignores_the_service_type(self):
        self.deploy("a", "--http-trigger-service-type", "NodePort")
        fn = self.get_json("a")[0]
        self.assertNotIn("attributes", fn["spec"]["triggers"]["http"])
        self.assertEqual(fn["status"]["externalInvocationUrls"],
                         ["0.0.0.0:%d" % fn["status"]["httpPort"]])


def host_of(url):
    host = url.rsplit(":", 1)[0]
    return host.strip("[]")


class StatusUrlsStayOnThisMachine(FakeTest):
    """No status URL is a private-range address: loopback, 0.0.0.0 (what Nuclio's Docker
    platform prints without an external address), an empty host, or a cluster name."""

    def assert_local_only(self, fn):
        status = fn["status"]
        for url in (status.get("internalInvocationUrls") or []) + \
                (status.get("externalInvocationUrls") or []):
            host = host_of(url)
            if host in ("", "0.0.0.0") or host.endswith(".svc.cluster.local"):
                continue
            self.assertTrue(ipaddress.ip_address(host).is_loopback, url)

    def test_every_url_is_loopback_or_a_cluster_name(self):
        self.deploy("a")
        self.deploy("b", attributes="{port: 8080}")
        self.deploy("c", env={"NUCLIO_TEST_HOST": "127.0.0.1"})
        self.deploy("d", "--namespace", "nuclio", platform="kube")
        self.deploy("e", "--namespace", "nuclio", "--http-trigger-service-type", "NodePort",
                    platform="kube")
        for platform in ("local", "kube"):
            for fn in self.get_json(None, platform, "--namespace", "nuclio"):
                self.assert_local_only(fn)
        with open(os.path.join(self.state_dir, "state.json")) as f:
            text = f.read()
        self.assertNotIn("172.17.", text)
        self.assertNotIn("192.168.", text)

    def test_a_served_function_answers_at_the_reported_loopback_url(self):
        python = sdk_python()
        if python is None:
            self.skipTest("no interpreter with nuclio_sdk")
        env = {"FAKE_NUCTL_SERVE": "1", "FAKE_NUCTL_PYTHON": python}
        self.deploy("served", env=env)
        self.addCleanup(self.run_fake, "delete", "function", "served", "--platform", "local")
        fn = self.get_json("served")[0]
        self.assert_local_only(fn)
        url = fn["status"]["externalInvocationUrls"][0]
        self.assertTrue(url.startswith("127.0.0.1:"), url)
        with urllib.request.urlopen("http://%s/" % url, timeout=30) as response:
            self.assertEqual(response.read(), b"ok from http")
        self.ok("delete", "function", "served", "--platform", "local")

        def refused():
            try:
                urllib.request.urlopen("http://%s/" % url, timeout=5)
            except (urllib.error.URLError, ConnectionError):
                return True
            return False

        wait_for("the served function to stop", refused)

    def test_a_served_node_port_function_on_kube(self):
        python = sdk_python()
        if python is None:
            self.skipTest("no interpreter with nuclio_sdk")
        env = {"FAKE_NUCTL_SERVE": "1", "FAKE_NUCTL_PYTHON": python}
        self.deploy("served", "--namespace", "nuclio", "--http-trigger-service-type", "NodePort",
                    platform="kube", env=env)
        self.addCleanup(self.run_fake, "delete", "function", "served", "--platform", "kube",
                        "--namespace", "nuclio")
        fn = self.get_json("served", "kube", "--namespace", "nuclio")[0]
        url = fn["status"]["externalInvocationUrls"][0]
        self.assertTrue(url.startswith("127.0.0.1:"), url)
        with urllib.request.urlopen("http://%s/" % url, timeout=30) as response:
            self.assertEqual(response.read(), b"ok from http")


class ServedByNucliosWrapper(FakeTest):
    """With FUSIONIZER_NUCLIO_UPSTREAM, a served function runs in Nuclio's own
    `_nuclio_wrapper.py`, through the processor stand-in (`tests/nuclio_runtime/trigger.py`)."""

    LIST_HANDLER = ("def handler(context, event):\n"
                    "    context.logger.info_with('served', path=event.path)\n"
                    "    return ['first of ' + context.trigger.name, 'second']\n")

    def test_a_served_function_runs_in_nuclios_wrapper(self):
        if not UPSTREAM:
            self.skipTest("FUSIONIZER_NUCLIO_UPSTREAM is not set: the fake serves functions with "
                          "its own runner (see docs/runtime.md)")
        python = sdk_python()
        path = self.function_dir("wrapped")
        with open(os.path.join(path, "main.py"), "w") as f:
            f.write(self.LIST_HANDLER)
        env = {"FAKE_NUCTL_SERVE": "1", "FAKE_NUCTL_PYTHON": python}
        out = self.run_fake("deploy", "wrapped", "--path", path, "--file",
                            os.path.join(path, "function.yaml"), "--platform", "local", env=env)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.addCleanup(self.run_fake, "delete", "function", "wrapped", "--platform", "local")
        url = self.get_json("wrapped")[0]["status"]["externalInvocationUrls"][0]
        with urllib.request.urlopen("http://%s/x?q=1" % url, data=b"", timeout=30) as response:
            # the wrapper answers a list with its first element (Nuclio >= 1.13.3), where the
            # fake's own runner answered the whole JSON array
            self.assertEqual(response.read(), b"first of http")
            self.assertEqual(response.headers["Content-Type"], "text/plain")
        log = os.path.join(self.state_dir, "server-wrapped.log")
        # the wrapper's log record, as it sends it to the processor (an `l` line)

        def logged():
            with open(log) as f:
                return '"message": "served"' in f.read()

        wait_for("the wrapper's log record", logged)
        with open(log) as f:
            record = next(json.loads(line) for line in f if '"message": "served"' in line)
        self.assertEqual((record["level"], record["with"]["path"]), ("info", "/x"))


class FunctionYamlAsUsersWriteIt(FakeTest):
    """pkg/nuctl/command/common/helpers.go GetUnmarshalFunc: JSON, else YAML via
    sigs.k8s.io/yaml (gopkg.in/yaml.v2, then encoding/json into functionconfig.Config)."""

    TEXT = """\
# a comment before everything
metadata:
  name: shop-a   # trailing comment
  labels: {"fusionizer.io/project": shop, 'team': "a b", version: 1.10, enabled: yes}
  annotations:
    "fusionizer.io/tasks": 'a,b'
    note: >
      folded
      text
spec:
  Runtime: python          # keys match case-insensitively
  handler: "main:handler"
  description: |
    line one
    line two
  unknownKey: dropped
  env:
    - {name: RETRIES, value: 3}
    - name: FLAG
      value: on
    - name: QUOTED
      value: "on"
    - name: MULTI
      value: |-
        a
        b
  triggers:
    http: {kind: http, numworkers: 3, attributes: {port: 8080, maxRequestBodySize: 1.5e3}}
  resources:
    limits: {cpu: 0.5, memory: 1024Mi}
"""

    def test_flow_mappings_quotes_comments_and_block_strings(self):
        self.deploy("shop-a", yaml_text=self.TEXT)
        fn = self.get_json("shop-a")[0]
        self.assertEqual(fn["metadata"]["labels"], {
            "enabled": "true", "fusionizer.io/project": "shop", "nuclio.io/project-name":
                "default", "team": "a b", "version": "1.1"})
        self.assertEqual(fn["metadata"]["annotations"],
                         {"fusionizer.io/tasks": "a,b", "note": "folded text\n"})
        spec = fn["spec"]
        self.assertEqual(spec["runtime"], "python:3.9")  # `python` is an alias
        self.assertEqual(spec["description"], "line one\nline two\n")
        self.assertNotIn("unknownKey", spec)
        self.assertEqual(spec["env"], [
            {"name": "RETRIES", "value": "3"}, {"name": "FLAG", "value": "true"},
            {"name": "QUOTED", "value": "on"}, {"name": "MULTI", "value": "a\nb"}])
        self.assertEqual(spec["triggers"]["http"]["numWorkers"], 3)
        self.assertEqual(spec["triggers"]["http"]["attributes"],
                         {"maxRequestBodySize": 1500, "port": 8080})
        self.assertEqual(spec["resources"], {"limits": {"cpu": "500m", "memory": "1Gi"},
                                             "requests": {"cpu": "25m", "memory": "1Mi"}})

    def test_json_config_files(self):
        doc = {"metadata": {"name": "j", "labels": {"fusionizer.io/project": "shop"}},
               "spec": {"runtime": "python:3.11", "handler": "main:handler"}}
        self.deploy("j", yaml_text=json.dumps(doc))
        fn = self.get_json("j")[0]
        self.assertEqual(fn["spec"]["triggers"], {"default-http": {
            "class": "", "kind": "http", "name": "default-http", "numWorkers": 1}})

    def test_a_type_error_is_encoding_json_s(self):
        text = FUNCTION_YAML.format(name="a", project="shop", attributes="{}").replace(
            "numWorkers: 2", "numWorkers: two")
        out = self.deploy("a", expect=1, yaml_text=text)
        self.assertEqual(out.stderr, (
            "\nError - error unmarshaling JSON: while decoding JSON: json: cannot unmarshal "
            "string into Go struct field Trigger.spec.triggers.numWorkers of type int\n"
            "    /nuclio/pkg/nuctl/command/deploy.go:140\n"
            "\nCall stack:\nFailed parsing function config file\n"
            "    /nuclio/pkg/nuctl/command/deploy.go:140\n"))

    def test_invalid_yaml(self):
        out = self.deploy("a", expect=1, yaml_text="spec: [unclosed\n")
        self.assertIn("\nError - Input is neither json nor yaml\n", out.stderr)
        self.assertIn("\nFailed identifying function config file format\n", out.stderr)

    def test_the_file_wins_over_build_flags(self):
        # common/helper.go PopulateFieldsFromValues: a flag fills a build field only when the
        # file left it empty
        text = FUNCTION_YAML.format(name="a", project="shop", attributes="{}").replace(
            "spec:\n", "spec:\n  build:\n    registry: registry.example:5000\n")
        self.deploy("a", "--registry", "localhost:5000", "--namespace", "nuclio",
                    platform="kube", yaml_text=text)
        fn = self.get_json("a", "kube", "--namespace", "nuclio")[0]
        self.assertEqual(fn["spec"]["build"]["registry"], "registry.example:5000")
        self.assertEqual(fn["spec"]["image"],
                         "registry.example:5000/nuclio/processor-a:latest")


# The keys of spec in functionconfig.Spec declaration order (pkg/functionconfig/types.go), as
# far as a deployed python function has them.
SPEC_ORDER = ["description", "disable", "publish", "handler", "runtime", "env", "envFrom",
              "resources", "image", "imageHash", "replicas", "minReplicas", "maxReplicas",
              "targetCPU", "dataBindings", "triggers", "volumes", "version", "alias", "build",
              "runRegistry", "imagePullSecrets", "runtimeAttributes", "loggerSinks",
              "dealerURI", "platform", "readinessTimeoutSeconds", "serviceType",
              "imagePullPolicy", "securityContext", "serviceAccount", "scaleToZero",
              "disableDefaultHTTPTrigger", "disableSensitiveFieldsMasking", "devices",
              "affinity", "nodeSelector", "nodeName", "tolerations", "priorityClassName",
              "preemptionPolicy", "deploymentStrategy", "hostIPC", "customScalingMetricSpecs",
              "autoScaleMetrics", "waitReadinessTimeoutBeforeFailure", "eventTimeout",
              "preemptionMode", "sidecars", "initContainers"]


class GetOutputShape(FakeTest):
    """pkg/nuctl/command/get.go renderFunctionConfigWithStatus with pkg/renderer/renderer.go:
    one object or an array, tab-indented JSON in Go struct order; -o yaml sorted."""

    def test_json_shape_with_enriched_fields(self):
        self.deploy("a", "--namespace", "nuclio", "--registry", "localhost:5000",
                    platform="kube", env={"FAKE_NUCTL_NOW": "1735550000"})
        out = self.ok("get", "function", "a", "-o", "json", "--platform", "kube",
                      "--namespace", "nuclio")
        self.assertTrue(out.stdout.startswith('{\n\t"metadata": {\n\t\t"name": "a",\n'),
                        out.stdout)
        self.assertTrue(out.stdout.endswith("\n}\n"))
        fn = json.loads(out.stdout)
        self.assertEqual(list(fn), ["metadata", "spec", "status"])
        spec = fn["spec"]
        self.assertEqual(list(spec), [k for k in SPEC_ORDER if k in spec])
        self.assertEqual(spec["eventTimeout"], "")
        self.assertEqual(spec["resources"], {"requests": {"cpu": "25m", "memory": "1Mi"}})
        self.assertEqual(spec["securityContext"], {})
        self.assertEqual(spec["targetCPU"], 75)
        self.assertEqual(spec["readinessTimeoutSeconds"], 120)
        self.assertIs(spec["disableDefaultHTTPTrigger"], False)
        self.assertEqual(spec["triggers"]["http"], {
            "class": "", "kind": "http", "name": "http", "numWorkers": 2,
            "attributes": {"serviceType": "ClusterIP"}})
        self.assertEqual(spec["build"]["codeEntryType"], "image")
        self.assertNotIn("path", spec["build"])
        self.assertEqual(spec["build"]["timestamp"], 1735550000)
        self.assertEqual((spec["alias"], spec["version"]), ("latest", -1))
        self.assertEqual(spec["image"], "localhost:5000/nuclio/processor-a:latest")
        self.assertEqual(fn["metadata"]["labels"]["nuclio.io/project-name"], "default")
        status = fn["status"]
        self.assertEqual(status["state"], "ready")
        self.assertEqual(status["containerImage"], spec["image"])
        self.assertEqual(status["logs"][0]["message"], "Deploying function")
        self.assertEqual(status["logs"][-1]["message"], "Function deploy complete")

    def test_one_object_or_an_array(self):
        self.deploy("a")
        out = self.ok("get", "function", "-o", "json", "--platform", "local")
        self.assertTrue(out.stdout.startswith("{\n"))
        self.deploy("b")
        out = self.ok("get", "function", "-o", "json", "--platform", "local")
        self.assertTrue(out.stdout.startswith("[\n\t{\n"))
        self.assertEqual([f["metadata"]["name"] for f in json.loads(out.stdout)], ["a", "b"])

    def test_yaml_output(self):
        self.deploy("a")
        out = self.ok("get", "function", "a", "-o", "yaml", "--platform", "local")
        self.assertTrue(out.stdout.startswith("metadata:\n  annotations:\n"), out.stdout)
        self.assertTrue(out.stdout.endswith("\n\n"))  # Fprintln after yaml's own newline
        self.assertIn('  eventTimeout: ""\n', out.stdout)
        self.assertIn("\n    value: hello, world=1\n", out.stdout)
        import yaml
        doc = yaml.safe_load(out.stdout)
        self.assertEqual(doc["spec"]["env"], [{"name": "GREETING", "value": "hello, world=1"}])

    def test_fake_output_is_the_reviewed_snapshot(self):
        # The fixture is NOT nuctl's output: it is this fake's, reviewed field by field against
        # the 1.14.1 source (tests/it/fixtures/README.md). This pins the fake against unreviewed
        # change; it cannot show that the fake matches Nuclio.
        with open(FIXTURE) as f:
            expected = f.read()
        fixture = json.loads(expected)
        work = os.path.join(self.tmp, "work")
        name = fixture["metadata"]["name"]
        os.makedirs(os.path.join(work, name))
        shutil.copyfile(FIXTURE_FUNCTION_YAML, os.path.join(work, name, "function.yaml"))
        with open(os.path.join(work, name, "main.py"), "w") as f:
            f.write(HANDLER)
        env = {"FAKE_NUCTL_NOW": "1735550000.123456"}
        self.ok("create", "project", "shop", "--platform", "kube", "--namespace", "nuclio",
                env=env)
        self.ok("deploy", name, "--path", name, "--file", name + "/function.yaml",
                "--registry", "localhost:5000", "--project-name", "shop", "--platform", "kube",
                "--namespace", "nuclio", env=env, cwd=work)
        out = self.ok("get", "function", name, "-o", "json", "--platform", "kube",
                      "--namespace", "nuclio")
        self.assertEqual(out.stdout, expected)




class EnvironmentKnobs(FakeTest):
    """The knobs the Rust integration tests use (tests/it/nuctl.rs, tests/it/nuctl_cli.rs)."""

    def test_calls_are_logged(self):
        self.run_fake("get", "function", "x", "-o", "json", "--platform", "local")
        with open(os.path.join(self.state_dir, "calls.jsonl")) as f:
            calls = [json.loads(line) for line in f]
        self.assertEqual(calls, [["get", "function", "x", "-o", "json", "--platform", "local"]])

    def test_fail_deploy_leaves_the_function_in_error(self):
        out = self.deploy("a", env={"FAKE_NUCTL_FAIL_DEPLOY": "a"}, expect=1)
        self.assertIn("Failed to build processor image", out.stderr)
        self.assertTrue(out.stderr.startswith("\nError - exit status 1\n"), out.stderr)
        status = self.get_json("a")[0]["status"]
        self.assertEqual(status["state"], "error")
        self.assertIn("Failed to build processor image", status["message"])

    def test_a_failed_redeploy_keeps_the_host_port_for_the_next_one(self):
        # local/platform.go: containers are removed only after a successful build, and the next
        # deploy reuses the previous container's host port
        self.deploy("a")
        port = self.get_json("a")[0]["status"]["httpPort"]
        self.deploy("a", env={"FAKE_NUCTL_FAIL_DEPLOY": "a"}, expect=1)
        self.assertNotIn("httpPort", self.get_json("a")[0]["status"])
        self.deploy("a")
        self.assertEqual(self.get_json("a")[0]["status"]["httpPort"], port)

    def test_stuck_deploy_stays_building_and_blocks_updates_and_deletes(self):
        self.deploy("a", env={"FAKE_NUCTL_STUCK": "a"}, expect=1)
        self.assertEqual(self.get_json("a")[0]["status"]["state"], "building")
        out = self.deploy("a", expect=1)
        self.assertIn("\nError - Function cannot be updated when existing function is being "
                      "provisioned\n", out.stderr)
        out = self.fails("delete", "function", "a", "--platform", "local")
        self.assertIn("\nError - Function is being provisioned and cannot be deleted\n",
                      out.stderr)
        self.ok("delete", "function", "a", "--force", "--platform", "local")
        self.ok("delete", "function", "a", "--platform", "local")  # idempotent

    def test_hang(self):
        path = self.function_dir("a")
        env = dict(self.env, FAKE_NUCTL_HANG="deploy")
        proc = subprocess.Popen([sys.executable, FAKE, "deploy", "a", "--path", path,
                                 "--platform", "local"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)

        def building():
            try:
                return self.state()["functions"]["nuclio"]["a"]["status"]["state"] == "building"
            except (OSError, KeyError, ValueError):
                return False

        wait_for("the hanging deploy to record the function", building)
        self.assertEqual(self.get_json("a")[0]["status"]["state"], "building")
        proc.kill()
        proc.wait()
        env = dict(self.env, FAKE_NUCTL_HANG="get")
        proc = subprocess.Popen([sys.executable, FAKE, "get", "function", "--platform", "local"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        def logged():
            with open(os.path.join(self.state_dir, "calls.jsonl")) as f:
                return len(f.readlines()) == 3

        wait_for("the call to be logged", logged)
        self.assertIsNone(proc.poll())

    def test_never_ready_waits_until_killed_whatever_the_readiness_timeout(self):
        path = self.function_dir("a")
        env = dict(self.env, FAKE_NUCTL_NEVER_READY="a")
        proc = subprocess.Popen(
            [sys.executable, FAKE, "deploy", "a", "--path", path, "--platform", "kube",
             "--namespace", "nuclio", "--readiness-timeout", "1"], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)

        def waiting():
            try:
                fn = self.state()["kube"]["functions"]["nuclio"]["a"]
            except (OSError, KeyError, ValueError):
                return False
            return fn["status"]["state"] == "waitingForResourceConfiguration"

        wait_for("the function to wait for a controller", waiting)
        self.assertEqual(self.get_json("a", "kube", "--namespace", "nuclio")[0]["status"]["state"],
                         "waitingForResourceConfiguration")
        self.assertIsNone(proc.poll())
        # other functions deploy as usual
        self.deploy("b", "--namespace", "nuclio", platform="kube", env={
            "FAKE_NUCTL_NEVER_READY": "a"})

    def test_warn_prints_warnings_on_stderr_for_every_command(self):
        env = {"FAKE_NUCTL_WARN": "1"}
        kube = ["--platform", "kube", "--namespace", "nuclio"]
        for args in (["version"], ["get", "function", "-o", "json"] + kube,
                     ["get", "function", "x", "-o", "json", "--platform", "local"]):
            out = self.run_fake(*args, env=env)
            self.assertIn("warnings.go:70] ", out.stderr, args)
            self.assertIn("WARNING: fake-credential-plugin", out.stderr, args)
        # stdout is what it was
        out = self.run_fake("get", "function", "-o", "json", *kube, env=env)
        self.assertEqual((out.returncode, out.stdout), (0, "No functions found\n"))
        out = self.run_fake("get", "function", "x", "-o", "json", *kube, env=env)
        self.assertEqual((out.returncode, out.stdout), (1, "No functions found"))

    def test_unknown_flags_fail_like_pflag(self):
        out = self.fails("get", "function", "--foo")
        self.assertEqual(out.stdout, "")
        self.assertEqual(out.stderr, "\nError - unknown flag: --foo\nCall stack:\nunknown flag: "
                                     "--foo\n")
        for args in (["deploy", "f", "--no-build"], ["deploy", "f", "--port", "8080"],
                     ["delete", "function", "f", "--output", "json"]):
            out = self.fails(*args)
            self.assertIn("unknown flag", out.stderr)

    def test_version(self):
        out = self.ok("version")
        self.assertEqual(out.stdout, 'Client version:\n"Label: 1.14.1, Git commit: '
                                     'f7573701a7cd7f093fe37481bd8e61d6979a3d14, OS: linux, '
                                     'Arch: amd64, Go version: go1.21"\n')


class BuildAheadAndRunImage(FakeTest):
    """`nuctl build` (pkg/nuctl/command/build.go) builds and pushes an image and creates no
    function; `nuctl deploy --run-image` without --path builds nothing
    (pkg/platform/abstract/platform.go functionBuildRequired) and runs the image, which the pod
    (kube) or `docker run` (local) must be able to pull."""

    REGISTRY = "registry.invalid:5000/team"
    IMAGE = "processor-shop-a:0123456789abcdef"

    def build(self, name, *flags, expect=0, env=None):
        path = self.function_dir(name)
        args = ["build", name, "--path", path, "--file", os.path.join(path, "function.yaml"),
                "--registry", self.REGISTRY, "--image", self.IMAGE] + list(flags)
        out = self.run_fake(*args, env=env)
        self.assertEqual(out.returncode, expect, "%s\nstdout: %s\nstderr: %s"
                         % (args, out.stdout, out.stderr))
        return out

    def run_image(self, name, image, *flags, platform="kube", expect=0):
        path = self.function_dir(name)
        args = ["deploy", name, "--file", os.path.join(path, "function.yaml"), "--run-image",
                image, "--platform", platform] + list(flags)
        out = self.run_fake(*args)
        self.assertEqual(out.returncode, expect, "%s\nstdout: %s\nstderr: %s"
                         % (args, out.stdout, out.stderr))
        return out

    def test_build_pushes_to_the_registry_and_creates_no_function(self):
        self.build("shop-a", "--platform", "kube", "--namespace", "nuclio")
        pushed = self.REGISTRY + "/" + self.IMAGE
        self.assertIn(pushed, self.state()["images"]["pushed"])
        self.assertIn(self.IMAGE, self.state()["images"]["local"])
        out = self.run_fake("get", "function", "-o", "json", "--platform", "kube",
                            "--namespace", "nuclio")
        self.assertEqual((out.returncode, out.stdout), (0, "No functions found\n"))

    def test_build_without_a_registry_pushes_nothing(self):
        path = self.function_dir("shop-a")
        self.ok("build", "shop-a", "--path", path, "--platform", "local")
        images = self.state()["images"]
        self.assertEqual((images["local"], images["pushed"]),
                         (["nuclio/processor-shop-a:latest"], []))

    def test_build_validates_flags_like_cobra(self):
        out = self.fails("build", "shop-a", "--run-image", "x")
        self.assertEqual(out.stderr, "\nError - unknown flag: --run-image\nCall stack:\n"
                                     "unknown flag: --run-image\n")
        out = self.fails("build", "shop-a", "--path", os.path.join(self.tmp, "nowhere"),
                         "--platform", "local")
        self.assertIn("Function path doesn't exist: ", out.stderr)

    def test_a_failed_build_pushes_nothing(self):
        out = self.build("shop-a", "--platform", "local", expect=1,
                         env={"FAKE_NUCTL_FAIL_DEPLOY": "shop-a"})
        self.assertIn("\nFailed to build processor image\n", out.stderr)
        state_file = os.path.join(self.state_dir, "state.json")
        self.assertFalse(os.path.exists(state_file) and self.state()["images"]["pushed"])

    def test_run_image_after_build_deploys_without_building(self):
        self.build("shop-a", "--platform", "kube", "--namespace", "nuclio")
        pushed = self.REGISTRY + "/" + self.IMAGE
        out = self.run_image("shop-a", pushed, "--namespace", "nuclio",
                             "--run-registry", self.REGISTRY)
        self.assertIn("Skipping build", out.stdout)
        self.assertNotIn("Building processor image", out.stdout)
        status = self.get_json("shop-a", "kube", "--namespace", "nuclio")[0]
        self.assertEqual(status["status"]["state"], "ready")
        self.assertEqual(status["spec"]["image"], pushed)

    def test_run_image_never_built_fails_on_kube_as_an_image_pull_back_off(self):
        image = self.REGISTRY + "/" + self.IMAGE
        out = self.run_image("shop-a", image, "--namespace", "nuclio", expect=1)
        self.assertTrue(out.stderr.startswith(
            "\nError - NuclioFunction in unhealthy state:\n\nError - context deadline "
            "exceeded\n"), out.stderr)
        self.assertIn("Error: ImagePullBackOff", out.stderr)
        self.assertIn('Failed to pull image "%s"' % image, out.stderr)
        self.assertTrue(out.stderr.endswith(
            "\nFailed to deploy function\n    ...//nuclio/pkg/platform/abstract/platform.go:236\n"),
            out.stderr)
        status = self.get_json("shop-a", "kube", "--namespace", "nuclio")[0]["status"]
        self.assertEqual(status["state"], "unhealthy")
        self.assertIn("Error: ImagePullBackOff", status["message"])

    def test_run_image_never_built_fails_on_docker_when_docker_run_cannot_pull(self):
        image = self.REGISTRY + "/" + self.IMAGE
        out = self.run_image("shop-a", image, platform="local", expect=1)
        self.assertIn("Unable to find image '%s' locally" % image, out.stderr)
        self.assertIn("\nFailed to run a Docker container\n", out.stderr)
        status = self.get_json("shop-a", "local")[0]["status"]
        self.assertEqual(status["state"], "error")

    def test_a_served_run_image_runs_the_code_it_was_built_from(self):
        python = sdk_python()
        if python is None:
            self.skipTest("no interpreter with nuclio_sdk")
        self.build("shop-a", "--platform", "local")
        # the build directory changes after the build: the image keeps the old code
        with open(os.path.join(self.tmp, "build", "shop-a", "main.py"), "w") as f:
            f.write("def handler(context, event):\n    return 'changed'\n")
        env = {"FAKE_NUCTL_SERVE": "1", "FAKE_NUCTL_PYTHON": python}
        path = os.path.join(self.tmp, "elsewhere")
        os.makedirs(path)
        with open(os.path.join(path, "function.yaml"), "w") as f:
            f.write(FUNCTION_YAML.format(name="shop-a", project="shop", attributes="{}"))
        self.ok("deploy", "shop-a", "--file", os.path.join(path, "function.yaml"),
                "--run-image", self.REGISTRY + "/" + self.IMAGE, "--platform", "local",
                env=env)
        self.addCleanup(self.run_fake, "delete", "function", "shop-a", "--platform", "local")
        url = self.get_json("shop-a")[0]["status"]["externalInvocationUrls"][0]
        with urllib.request.urlopen("http://%s/" % url, timeout=30) as response:
            self.assertEqual(response.read(), b"ok from http")

    def test_on_docker_an_image_in_the_local_daemon_runs(self):
        path = self.function_dir("shop-a")
        self.ok("build", "shop-a", "--path", path, "--image", self.IMAGE, "--platform", "local")
        self.run_image("shop-a", self.IMAGE, platform="local")
        self.assertEqual(self.get_json("shop-a", "local")[0]["status"]["state"], "ready")


if __name__ == "__main__":
    unittest.main()
