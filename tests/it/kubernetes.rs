//! The Kubernetes manifests' serve settings (`deploy/kubernetes/serve/overlay.toml`, the
//! `ConfigMap` serve reads through `FUSIONIZER_OVERLAY`) are settings `fusionizer validate`
//! accepts: given as the overlay of a project on the kube platform, the project validates. The manifests themselves are checked by
//! `scripts/validate-kubernetes` (schemas, and the facts across them in `tests/kubernetes/`).

use crate::support::{expect, stderr, TestEnv};

#[test]
fn the_manifests_serve_settings_validate_on_a_kube_project() {
    let overlay = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/kubernetes/serve/overlay.toml");
    let env = TestEnv::example("quickstart");
    let toml = env.project().join("fusion.toml");
    // The project's own part (docs/kubernetes.md): the nuctl platform and a registry; the
    // overlay brings the rest of the in-cluster settings.
    let project = std::fs::read_to_string(&toml).unwrap().replace(
        "[project]\nname = \"quickstart\"\n",
        "[project]\nname = \"quickstart\"\nplatform = \"nuctl\"\n\n\
         [nuctl]\nregistry = \"registry.invalid:5000\"\n",
    );
    assert!(project.contains("platform = \"nuctl\""), "{project}");
    std::fs::write(&toml, project).unwrap();
    let overlay = overlay.to_str().unwrap();
    let out = expect(&env, &["--overlay", overlay, "validate"], 0);
    assert!(
        !stderr(&out).contains("warning"),
        "{}",
        crate::support::transcript(&out)
    );
    // The overlay deploys prebuilt images (the pod has no Docker), which are named after the
    // project's registry: without one, the project is refused.
    let without = std::fs::read_to_string(&toml)
        .unwrap()
        .replace("registry = \"registry.invalid:5000\"\n", "");
    std::fs::write(&toml, without).unwrap();
    let out = expect(&env, &["--overlay", overlay, "validate"], 78);
    assert!(
        stderr(&out).contains("`nuctl.images = \"prebuilt\"` needs a registry"),
        "{}",
        crate::support::transcript(&out)
    );
}
