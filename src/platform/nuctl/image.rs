//! The image of a function built ahead (`[nuctl] images = "prebuilt"`): a pure function of the
//! function's name and content digest, so `fusionizer images` (which builds and pushes it) and a
//! deploy (which runs it with `nuctl deploy --run-image`) name the same image without sharing
//! any state.
//!
//! The repository is what nuctl would name it, `processor-<function>` (pkg/processor/build/
//! builder.go `getImage`: `processor-<name>` when `spec.build.image` is unset), given to
//! `nuctl build --image` explicitly with a tag, so nuctl's `nuclio/` prefix never applies (that
//! `getImage` branch runs only without `--image`). The docker builder pushes it to
//! `<registry>/<image>` (pkg/containerimagebuilderpusher/docker.go `pushContainerImage` →
//! pkg/dockerclient/shell.go `PushImage` → pkg/common/helper.go `CompileImageName`, which trims
//! a trailing `/` of the registry).
//!
//! The tag is the first [`TAG_HEX`] hex digits of the `fusionizer.io/digest` sha256: 128 bits,
//! so two different artifacts of one function share a tag with probability about n²/2¹²⁹ for n
//! versions — never in practice — and a tag stays short in listings. Only the function's own
//! versions share a repository, so the tag need only tell those apart.

use crate::config::NuctlConfig;

use super::REGISTRY_ENV;

/// nuctl's fallback for `deploy --run-registry` (pkg/nuctl/command/deploy.go
/// `populateDeploymentDefaults`).
pub const RUN_REGISTRY_ENV: &str = "NUCTL_RUN_REGISTRY";

/// Hex digits of the content digest kept in an image tag (see the module documentation).
pub const TAG_HEX: usize = 32;

/// Where images are pushed (`nuctl build --registry`) and where the cluster pulls them from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registries {
    /// `[nuctl] registry`, else env `NUCTL_REGISTRY`.
    pub push: String,
    /// `[nuctl] run-registry`, else env `NUCTL_RUN_REGISTRY`, else [`Registries::push`].
    pub pull: String,
}

impl Registries {
    /// The registries of `settings`, with nuctl's environment fallbacks read through `env`;
    /// `None` without a push registry.
    pub fn resolve(settings: &NuctlConfig, env: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let given = |setting: &Option<String>, var: &str| {
            setting
                .clone()
                .or_else(|| env(var))
                .map(|r| r.trim_end_matches('/').to_string())
                .filter(|r| !r.is_empty())
        };
        let push = given(&settings.registry, REGISTRY_ENV)?;
        let pull = given(&settings.run_registry, RUN_REGISTRY_ENV).unwrap_or_else(|| push.clone());
        Some(Registries { push, pull })
    }

    /// [`Registries::resolve`] with the process environment.
    pub fn from_env(settings: &NuctlConfig) -> Option<Self> {
        Self::resolve(settings, |var| std::env::var(var).ok())
    }
}

/// One function's prebuilt image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionImage {
    /// `processor-<function>:<tag>`: `nuctl build --image`.
    pub name: String,
    /// `<push registry>/<name>`: what `nuctl build` pushes.
    pub pushed: String,
    /// `<pull registry>/<name>`: `nuctl deploy --run-image`, what the function's pod pulls.
    pub pulled: String,
}

/// The image of function `function` whose content digest is `digest` (`sha256:<hex>`).
pub fn function_image(registries: &Registries, function: &str, digest: &str) -> FunctionImage {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    let tag: String = hex.chars().take(TAG_HEX).collect();
    let name = format!("processor-{function}:{tag}");
    FunctionImage {
        pushed: format!("{}/{name}", registries.push),
        pulled: format!("{}/{name}", registries.pull),
        name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(registry: Option<&str>, run_registry: Option<&str>) -> NuctlConfig {
        NuctlConfig {
            registry: registry.map(str::to_string),
            run_registry: run_registry.map(str::to_string),
            ..NuctlConfig::default()
        }
    }

    #[test]
    fn the_image_is_named_after_the_function_and_its_digest() {
        let registries =
            Registries::resolve(&settings(Some("registry.invalid/team/"), None), |_| None).unwrap();
        let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
        let image = function_image(&registries, "shop-a", &digest);
        assert_eq!(
            image.name,
            "processor-shop-a:0123456789abcdef0123456789abcdef"
        );
        assert_eq!(
            image.pushed,
            "registry.invalid/team/processor-shop-a:0123456789abcdef0123456789abcdef"
        );
        assert_eq!(image.pulled, image.pushed);
    }

    #[test]
    fn the_run_registry_is_where_the_pod_pulls() {
        let env = |var: &str| (var == RUN_REGISTRY_ENV).then(|| "pull.invalid:5000".to_string());
        let r = Registries::resolve(&settings(Some("push.invalid:5000"), None), env).unwrap();
        assert_eq!(r.push, "push.invalid:5000");
        assert_eq!(r.pull, "pull.invalid:5000");
        let r = Registries::resolve(&settings(Some("a.invalid"), Some("b.invalid")), env).unwrap();
        assert_eq!(
            (r.push.as_str(), r.pull.as_str()),
            ("a.invalid", "b.invalid")
        );
    }

    #[test]
    fn no_registry_means_no_prebuilt_images() {
        assert_eq!(
            Registries::resolve(&settings(None, Some("b.invalid")), |_| None),
            None
        );
        let env = |var: &str| (var == REGISTRY_ENV).then(|| "env.invalid".to_string());
        assert_eq!(
            Registries::resolve(&settings(None, None), env)
                .unwrap()
                .push,
            "env.invalid"
        );
    }
}
