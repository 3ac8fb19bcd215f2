//! The Kubernetes manifests' serve settings (`deploy/kubernetes/serve/overlay.toml`, the
//! `ConfigMap` serve reads through `FUSIONIZER_OVERLAY`) are settings `fusionizer validate`
//! accepts: merged key by key over the `[serve]` and `[nuctl]` tables of a project on the kube
//! platform, as the overlay is, the project validates. The manifests themselves are checked by
//! `scripts/validate-kubernetes` (schemas, and the facts across them in `tests/kubernetes/`).

use crate::support::{expect, stderr, TestEnv};

/// The overlay's tables, each merged key by key over the project's table of the same name.
fn merged(project: &str, overlay: &str) -> String {
    let mut project: toml::Table = project.parse().expect("fusion.toml parses");
    let overlay: toml::Table = overlay.parse().expect("overlay.toml parses");
    for (name, table) in overlay {
        assert!(
            name == "serve" || name == "nuctl",
            "overlay.toml has a table `[{name}]`: only [serve] and [nuctl] are merged"
        );
        let toml::Value::Table(table) = table else {
            panic!("`{name}` in overlay.toml is not a table");
        };
        let into = project
            .entry(name)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("a table in fusion.toml");
        into.extend(table);
    }
    toml::to_string(&project).unwrap()
}

#[test]
fn the_manifests_serve_settings_validate_on_a_kube_project() {
    let overlay = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/kubernetes/serve/overlay.toml"),
    )
    .unwrap();
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
    std::fs::write(&toml, merged(&project, &overlay)).unwrap();
    let out = expect(&env, &["validate"], 0);
    assert!(
        !stderr(&out).contains("warning"),
        "{}",
        crate::support::transcript(&out)
    );
}
