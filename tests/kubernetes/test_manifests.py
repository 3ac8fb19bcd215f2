"""Facts across the Kubernetes manifests of deploy/kubernetes/ that no schema checks: names and
labels that must agree between objects, the settings file the Deployment points serve at, the
namespaces of the two kustomizations, and the Deployment's safety settings. Also shows that the
schema validation scripts/validate-kubernetes runs does refuse a broken manifest.

Run: .venv-k8s/bin/python -m unittest discover -s tests/kubernetes -p 'test_*.py' (or
scripts/validate-kubernetes). Needs PyYAML and kubernetes-validate
(deploy/kubernetes/requirements-validate.txt) and Python 3.11 or later (tomllib).
"""

import copy
import pathlib
import re
import tomllib
import unittest
import urllib.parse

import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
SCHEMA_VERSION = "1.29.0"


def load(path):
    """The one YAML document of `path`."""
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def objects(kustomization_dir):
    """The objects a kustomization lists in `resources`, recursing into directories, each with the
    namespace the nearest kustomization gives it (as `kubectl kustomize` does; the top ones set
    none). Generators and patches are not applied here."""
    kustomization = load(kustomization_dir / "kustomization.yaml")
    found = []
    for entry in kustomization.get("resources", []):
        path = (kustomization_dir / entry).resolve()
        if path.is_dir():
            found.extend(objects(path))
        else:
            found.append(load(path))
    namespace = kustomization.get("namespace")
    if namespace:
        for obj in found:
            if obj["kind"] != "Namespace":
                obj.setdefault("metadata", {})["namespace"] = namespace
    return found


def one(objs, kind, name="fusionizer"):
    matches = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    if len(matches) != 1:
        raise AssertionError(f"expected one {kind} {name}, found {len(matches)}")
    return matches[0]


def duration_seconds(text):
    """`30s`, `2m`, `1m30s` as seconds (the forms fusion.toml takes)."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not parts or not text:
        raise ValueError(f"not a duration: {text!r}")
    h, m, s = (int(p or 0) for p in parts.groups())
    return h * 3600 + m * 60 + s


class Manifests(unittest.TestCase):
    def setUp(self):
        self.objs = objects(DEPLOY)
        self.serve_kustomization = load(DEPLOY / "serve" / "kustomization.yaml")
        self.rbac_kustomization = load(DEPLOY / "nuclio-rbac" / "kustomization.yaml")
        self.deployment = one(self.objs, "Deployment")
        self.pod = self.deployment["spec"]["template"]["spec"]
        (self.container,) = self.pod["containers"]
        self.service = one(self.objs, "Service")
        with open(DEPLOY / "serve" / "overlay.toml", "rb") as f:
            self.overlay = tomllib.load(f)

    def container_port(self, port):
        """The container port a probe or Service names, by name or number."""
        for p in self.container["ports"]:
            if port in (p.get("name"), p["containerPort"]):
                return p["containerPort"]
        self.fail(f"port {port!r} names no port of container {self.container['name']}")

    def env(self, name):
        (var,) = [e for e in self.container["env"] if e["name"] == name]
        return var

    def mount_of(self, path):
        """The volume mounted at the directory holding `path`, or at `path` itself."""
        path = pathlib.PurePosixPath(path)
        for mount in self.container["volumeMounts"]:
            if pathlib.PurePosixPath(mount["mountPath"]) in (path, *path.parents):
                (volume,) = [v for v in self.pod["volumes"] if v["name"] == mount["name"]]
                return mount, volume
        self.fail(f"nothing is mounted at {path}")

    def test_every_manifest_file_is_listed_by_a_kustomization(self):
        listed = set()
        for kustomization_file in DEPLOY.rglob("kustomization.yaml"):
            k = load(kustomization_file)
            base = kustomization_file.parent
            for entry in k.get("resources", []):
                listed.add((base / entry).resolve())
            for patch in k.get("patches", []):
                listed.add((base / patch["path"]).resolve())
            for generator in k.get("configMapGenerator", []):
                for file in generator.get("files", []):
                    listed.add((base / file.split("=")[-1]).resolve())
        for path in list(DEPLOY.rglob("*.yaml")) + list(DEPLOY.rglob("*.toml")):
            if path.name != "kustomization.yaml":
                self.assertIn(path.resolve(), listed, f"{path} is in no kustomization")
        for path in listed:
            self.assertTrue(path.exists(), f"a kustomization lists {path}, which does not exist")

    def test_one_replica_recreated_not_rolled(self):
        self.assertEqual(self.deployment["spec"]["replicas"], 1)
        self.assertEqual(self.deployment["spec"]["strategy"], {"type": "Recreate"})

    def test_the_selectors_match_the_pod_labels(self):
        labels = self.deployment["spec"]["template"]["metadata"]["labels"]
        for selector in (
            self.deployment["spec"]["selector"]["matchLabels"],
            self.service["spec"]["selector"],
        ):
            self.assertTrue(selector)
            self.assertLessEqual(selector.items(), labels.items())
        # The selectors are not changed by kustomize's `labels:` (includeSelectors is off), so
        # the rendered objects keep them as written.
        for k in (self.serve_kustomization, self.rbac_kustomization):
            for entry in k.get("labels", []):
                self.assertFalse(entry.get("includeSelectors", False))

    def test_the_service_and_the_probes_reach_the_container_port(self):
        (port,) = self.service["spec"]["ports"]
        self.assertEqual(self.service["spec"]["type"], "ClusterIP")
        self.assertEqual(port["port"], 8000)
        self.assertEqual(self.container_port(port["targetPort"]), 8000)
        listen_port = int(self.overlay["serve"]["listen"].rsplit(":", 1)[1])
        self.assertEqual(listen_port, 8000)
        self.assertEqual(self.overlay["serve"]["listen"], "0.0.0.0:8000")
        for probe in ("readinessProbe", "livenessProbe"):
            get = self.container[probe]["httpGet"]
            self.assertEqual(self.container_port(get["port"]), 8000, probe)
        self.assertEqual(self.container["readinessProbe"]["httpGet"]["path"], "/-/health")
        # /-/routes answers 200 in every state; /-/health is 503 during a start-up deploy.
        self.assertEqual(self.container["livenessProbe"]["httpGet"]["path"], "/-/routes")

    def test_the_service_account_is_the_one_bound_to_the_role(self):
        account = one(self.objs, "ServiceAccount")
        self.assertEqual(self.pod["serviceAccountName"], account["metadata"]["name"])
        binding = one(self.objs, "RoleBinding")
        role = one(self.objs, "Role")
        self.assertEqual(binding["roleRef"], {
            "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"],
        })
        self.assertEqual(binding["subjects"], [{
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }])
        self.assertEqual(binding["metadata"]["namespace"], role["metadata"]["namespace"])

    def test_the_role_lives_where_nuctl_deploys(self):
        role = one(self.objs, "Role")
        self.assertEqual(role["metadata"]["namespace"], self.overlay["nuctl"]["namespace"])
        self.assertEqual(self.rbac_kustomization["namespace"], self.overlay["nuctl"]["namespace"])
        nuclio = {r for rule in role["rules"] if rule["apiGroups"] == ["nuclio.io"]
                  for r in rule["resources"]}
        self.assertEqual(nuclio, {"nucliofunctions", "nuclioprojects", "nucliofunctionevents",
                                  "nuclioapigateways"})
        for rule in role["rules"]:
            self.assertNotIn("*", rule["verbs"], rule)
            self.assertNotIn("*", rule["resources"], rule)

    def test_the_overlay_is_the_file_fusionizer_overlay_names(self):
        (generator,) = self.serve_kustomization["configMapGenerator"]
        self.assertEqual(generator["name"], "fusionizer-settings")
        self.assertEqual(generator["files"], ["overlay.toml"])
        path = self.env("FUSIONIZER_OVERLAY")["value"]
        self.assertEqual(path, "/etc/fusionizer/overlay.toml")
        mount, volume = self.mount_of(path)
        self.assertTrue(mount["readOnly"])
        self.assertEqual(volume["configMap"]["name"], generator["name"])
        key = str(pathlib.PurePosixPath(path).relative_to(mount["mountPath"]))
        self.assertEqual(key, generator["files"][0])
        self.assertLessEqual(set(self.overlay), {"serve", "nuctl"})

    def test_the_proxy_url_is_the_service(self):
        url = urllib.parse.urlsplit(self.overlay["nuctl"]["proxy-url"])
        namespace = self.service["metadata"]["namespace"]
        name = self.service["metadata"]["name"]
        self.assertEqual(url.scheme, "http")
        self.assertEqual(url.hostname, f"{name}.{namespace}.svc.cluster.local")
        self.assertEqual(url.port, self.service["spec"]["ports"][0]["port"])
        self.assertEqual(self.overlay["nuctl"]["invocation-url"], "internal")
        self.assertEqual(self.overlay["nuctl"]["platform"], "kube")
        self.assertNotIn("kubeconfig", self.overlay["nuctl"])
        # The Service's shorter names, which pods of the namespace and of others use.
        self.assertLessEqual(
            {name, f"{name}.{namespace}", f"{name}.{namespace}.svc"},
            set(self.overlay["serve"]["allowed-hosts"]),
        )

    def test_the_pod_deploys_prebuilt_images(self):
        # serve's pod has no Docker: nuctl could not build an image there (docs/nuctl.md,
        # "Images built ahead"), so deploys run the images CI built with `fusionizer images`.
        self.assertEqual(self.overlay["nuctl"]["images"], "prebuilt")

    def test_the_pod_runs_unprivileged_on_a_read_only_root(self):
        self.assertTrue(self.pod["securityContext"]["runAsNonRoot"])
        self.assertEqual(self.pod["securityContext"]["runAsUser"], 10001)
        context = self.container["securityContext"]
        self.assertFalse(context["allowPrivilegeEscalation"])
        self.assertEqual(context["capabilities"]["drop"], ["ALL"])
        self.assertTrue(context["readOnlyRootFilesystem"])
        # What serve and nuctl write is on writable volumes of their own.
        state = self.env("FUSIONIZER_STATE_DIR")["value"]
        self.assertEqual(state, "/var/lib/fusionizer")
        for path in (state, "/tmp"):
            mount, volume = self.mount_of(path)
            self.assertEqual(mount["mountPath"], path)
            self.assertFalse(mount.get("readOnly", False))
            self.assertIn("emptyDir", volume)
        self.assertEqual(self.container["args"], ["-C", "/project", "serve"])
        self.assertTrue(self.container["resources"]["requests"])
        self.assertTrue(self.container["resources"]["limits"])

    def test_the_token_comes_from_a_secret(self):
        token_env = self.overlay["serve"]["token-env"]
        ref = self.env(token_env)["valueFrom"]["secretKeyRef"]
        self.assertEqual((ref["name"], ref["key"]), ("fusionizer-token", "token"))
        self.assertFalse(ref.get("optional", False))

    def test_the_grace_period_outlasts_the_drain(self):
        shutdown = duration_seconds(self.overlay["serve"]["shutdown-timeout"])
        # serve's drain, then 5 s for the last answers (CLOSE_GRACE in src/serve/mod.rs).
        self.assertGreater(self.pod["terminationGracePeriodSeconds"], shutdown + 5)

    def test_the_image_set_by_kustomize_is_the_containers(self):
        for k in (load(DEPLOY / "kustomization.yaml"), load(DEPLOY / "mounted" / "kustomization.yaml")):
            (image,) = k["images"]
            self.assertEqual(image["name"], self.container["image"])

    def test_the_mounted_variant_mounts_the_project_read_only(self):
        mounted = DEPLOY / "mounted"
        k = load(mounted / "kustomization.yaml")
        (patch,) = k["patches"]
        self.assertEqual(patch["target"], {"kind": "Deployment", "name": "fusionizer"})
        spec = load(mounted / patch["path"])["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        self.assertEqual(container["name"], self.container["name"])
        (mount,) = container["volumeMounts"]
        self.assertEqual((mount["mountPath"], mount["readOnly"]), ("/project", True))
        (volume,) = spec["volumes"]
        pvc = load(mounted / "project-pvc.yaml")
        self.assertEqual(volume["persistentVolumeClaim"],
                         {"claimName": pvc["metadata"]["name"], "readOnly": True})
        self.assertEqual(pvc["metadata"]["namespace"], self.deployment["metadata"]["namespace"])


class SchemaValidation(unittest.TestCase):
    """The schema check refuses what it should (scripts/validate-kubernetes runs it on files)."""

    def setUp(self):
        self.deployment = load(DEPLOY / "serve" / "deployment.yaml")

    def test_the_deployment_as_written_validates(self):
        kubernetes_validate.validate(self.deployment, SCHEMA_VERSION, strict=True)

    def test_a_misspelt_field_is_refused_in_strict_mode(self):
        bad = copy.deepcopy(self.deployment)
        bad["spec"]["replica"] = bad["spec"].pop("replicas")
        with self.assertRaises(kubernetes_validate.ValidationError) as caught:
            kubernetes_validate.validate(bad, SCHEMA_VERSION, strict=True)
        self.assertIn("replica", str(caught.exception))

    def test_a_value_of_the_wrong_type_is_refused(self):
        bad = copy.deepcopy(self.deployment)
        bad["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8000"
        with self.assertRaises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, SCHEMA_VERSION, strict=True)

    def test_the_schemas_of_1_29_ship_with_the_package(self):
        self.assertIn("1.29.0", kubernetes_validate.utils.all_versions())


if __name__ == "__main__":
    unittest.main()
