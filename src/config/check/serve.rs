//! `[serve]` and `[nuctl]`: addresses, sizes, timeouts and the nuctl settings, defaults filled in.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use super::Checker;
use crate::config::{
    ImageMode, NuctlConfig, PlatformKind, ServeConfig, UrlPreference, MAX_RESPONSE_LIMIT,
};

const SERVE_KEYS: &[&str] = &[
    "listen",
    "advertise",
    "token-env",
    "max-body-size",
    "max-response-size",
    "request-timeout",
    "drain-timeout",
    "shutdown-timeout",
    "max-upload-size",
    "max-unpacked-size",
    "trace-spans",
    "trace-edges",
    "async-queue",
    "async-queue-size",
    "allowed-hosts",
    "allowed-origins",
    "header-read-timeout",
    "body-read-timeout",
    "idle-timeout",
    "max-connections",
    "self-heal",
];
const NUCTL_KEYS: &[&str] = &[
    "binary",
    "platform",
    "namespace",
    "kubeconfig",
    "registry",
    "run-registry",
    "project",
    "readiness-timeout",
    "build-timeout",
    "invocation-url",
    "http-trigger-service-type",
    "proxy-url",
    "images",
];

impl Checker<'_> {
    pub(super) fn serve(&mut self, root: &DeTable<'_>) -> ServeConfig {
        let mut serve = ServeConfig::default();
        let Some(table) = self.table(root, "serve") else {
            return serve;
        };
        self.check_keys(table, SERVE_KEYS, Some("`[serve]`"));
        if let Some(value) = table.get("listen") {
            if let Some(text) = self.string(value, "serve.listen") {
                if text.parse::<SocketAddr>().is_ok() {
                    serve.listen = text.to_string();
                } else {
                    self.error(
                        value.span(),
                        format!("invalid `listen` address `{text}`"),
                        Some("use `IP:PORT`, e.g. `127.0.0.1:8000` or `0.0.0.0:8000`".to_string()),
                    );
                }
            }
        }
        serve.advertise = self.optional_string(table, "advertise", "serve.advertise");
        if let Some(value) = table.get("token-env") {
            if let Some(text) = self.string(value, "serve.token-env") {
                if is_env_name(text) {
                    serve.token_env = Some(text.to_string());
                } else {
                    self.error(
                        value.span(),
                        format!("invalid `token-env` `{text}`: not an environment variable name"),
                        Some(
                            "name the variable that holds the token, e.g. `FUSIONIZER_TOKEN`"
                                .to_string(),
                        ),
                    );
                }
            }
        }
        self.serve_limits(table, &mut serve);
        if let Some(value) = table.get("self-heal") {
            match value.get_ref() {
                toml::de::DeValue::Boolean(b) => serve.self_heal = *b,
                _ => self.type_error(value, "serve.self-heal", "a boolean"),
            }
        }
        self.serve_access(table, &mut serve);
        serve
    }

    /// `[serve]`'s bounds: sizes, timeouts and counts.
    fn serve_limits(&mut self, table: &DeTable<'_>, serve: &mut ServeConfig) {
        for (key, slot) in [
            ("max-body-size", &mut serve.max_body_bytes),
            ("max-upload-size", &mut serve.max_upload_bytes),
            ("max-unpacked-size", &mut serve.max_unpacked_bytes),
            ("async-queue-size", &mut serve.async_queue_bytes),
        ] {
            if let Some(value) = table.get(key) {
                if let Some(bytes) = self.size(value, &format!("serve.{key}")) {
                    *slot = bytes;
                }
            }
        }
        if let Some(value) = table.get("max-response-size") {
            if let Some(bytes) = self.size(value, "serve.max-response-size") {
                if bytes > MAX_RESPONSE_LIMIT {
                    self.error(
                    value.span(),
                    format!("`serve.max-response-size` must be at most 1GiB, not {bytes} bytes"),
                    Some("a worker's answer is held in memory whole; keep the limit to what serve can hold".to_string()),
                );
                } else {
                    serve.max_response_bytes = bytes;
                }
            }
        }
        if let Some(d) = self.positive_duration(table, "serve", "request-timeout", None) {
            serve.request_timeout = d;
        }
        for (key, slot) in [
            ("header-read-timeout", &mut serve.header_read_timeout),
            ("body-read-timeout", &mut serve.body_read_timeout),
            ("idle-timeout", &mut serve.idle_timeout),
        ] {
            let hint = "a connection that never times out can be held forever by a client that \
                    sends nothing";
            if let Some(d) = self.positive_duration(table, "serve", key, Some(hint)) {
                *slot = d;
            }
        }
        if let Some(value) = table.get("drain-timeout") {
            if let Some(duration) = self.duration(value, "serve.drain-timeout") {
                serve.drain_timeout = duration;
            }
        }
        if let Some(value) = table.get("shutdown-timeout") {
            if let Some(duration) = self.duration(value, "serve.shutdown-timeout") {
                serve.shutdown_timeout = duration;
            }
        }
        for (key, slot, min) in [
            ("trace-spans", &mut serve.trace_spans, 0),
            ("trace-edges", &mut serve.trace_edges, 1),
            ("async-queue", &mut serve.async_queue, 1),
            ("max-connections", &mut serve.max_connections, 1),
        ] {
            if let Some(value) = table.get(key) {
                if let Some(n) = self.count(value, &format!("serve.{key}"), min, 1 << 20) {
                    *slot = usize::try_from(n).unwrap_or(usize::MAX);
                }
            }
        }
    }

    /// `[serve]`'s `allowed-hosts` and `allowed-origins` (docs/security.md).
    fn serve_access(&mut self, table: &DeTable<'_>, serve: &mut ServeConfig) {
        if let Some(value) = table.get("allowed-hosts") {
            serve.allowed_hosts = self.string_list(value, "serve.allowed-hosts", |host| {
                allowed_host_problem(host).map(|reason| {
                    (
                        reason,
                        "write a host name or IP address as clients put it in `Host` (no scheme, \
                     port or path), `*.example.com` for its subdomains, or `*` for any host"
                            .to_string(),
                    )
                })
            });
        }
        if let Some(value) = table.get("allowed-origins") {
            serve.allowed_origins = self.string_list(value, "serve.allowed-origins", |origin| {
                allowed_origin_problem(origin).map(|reason| {
                    (
                        reason,
                        "write an origin as browsers send it, `scheme://host` or \
                     `scheme://host:port` with no path (e.g. `http://localhost:3000`), or `*`"
                            .to_string(),
                    )
                })
            });
        }
    }

    // Long by design: one linear pass over `[nuctl]`, each key checked where it is read.
    pub(super) fn nuctl(
        &mut self,
        root: &DeTable<'_>,
        root_dir: &Path,
        project_platform: PlatformKind,
    ) -> NuctlConfig {
        let mut nuctl = NuctlConfig::default();
        let Some(table) = self.table(root, "nuctl") else {
            return nuctl;
        };
        self.check_keys(table, NUCTL_KEYS, Some("`[nuctl]`"));
        if let Some(binary) = self.optional_string(table, "binary", "nuctl.binary") {
            // A bare name is looked up on PATH; anything with a `/` or a `~` is a path.
            nuctl.binary = if binary.contains('/') || binary.starts_with('~') {
                setting_path(root_dir, &binary).display().to_string()
            } else {
                binary
            };
        }
        if let Some(value) = table.get("platform") {
            if let Some(text) = self.string(value, "nuctl.platform") {
                if matches!(text, "auto" | "local" | "kube") {
                    nuctl.platform = Some(text.to_string());
                } else {
                    self.error(
                        value.span(),
                        format!("unknown nuctl platform `{text}`"),
                        Some("`nuctl.platform` is `auto`, `local` or `kube`".to_string()),
                    );
                }
            }
        }
        nuctl.namespace = self.optional_string(table, "namespace", "nuctl.namespace");
        if project_platform == PlatformKind::Nuctl && nuctl.platform.as_deref() == Some("kube") {
            self.require_namespace(table);
        }
        nuctl.kubeconfig = self
            .optional_string(table, "kubeconfig", "nuctl.kubeconfig")
            .map(|text| setting_path(root_dir, &text));
        if let Some(value) = table.get("http-trigger-service-type") {
            if let Some(text) = self.string(value, "nuctl.http-trigger-service-type") {
                if matches!(text, "NodePort" | "ClusterIP") {
                    nuctl.http_trigger_service_type = Some(text.to_string());
                } else {
                    self.error(
                        value.span(),
                        format!("unknown `http-trigger-service-type` `{text}`"),
                        Some(
                            "`http-trigger-service-type` is `NodePort` (serve outside the \
                             cluster) or `ClusterIP` (serve inside it)"
                                .to_string(),
                        ),
                    );
                }
            }
        }
        if let Some(value) = table.get("proxy-url") {
            if let Some(text) = self.string(value, "nuctl.proxy-url") {
                if text.starts_with("http://") || text.starts_with("https://") {
                    nuctl.proxy_url = Some(text.trim_end_matches('/').to_string());
                } else {
                    self.error(
                        value.span(),
                        format!("`nuctl.proxy-url` `{text}` is not an http(s) URL"),
                        Some(
                            "write the URL functions use to reach `fusionizer serve`, e.g. \
                             `http://fusionizer.tools.svc.cluster.local:8000`"
                                .to_string(),
                        ),
                    );
                }
            }
        }
        nuctl.registry = self.optional_string(table, "registry", "nuctl.registry");
        nuctl.run_registry = self.optional_string(table, "run-registry", "nuctl.run-registry");
        nuctl.project = self.optional_string(table, "project", "nuctl.project");
        for (key, slot) in [
            ("readiness-timeout", &mut nuctl.readiness_timeout),
            ("build-timeout", &mut nuctl.build_timeout),
        ] {
            let hint = "every deploy has a deadline: leave the key out for the default, or give a \
                        duration such as `\"10m\"`";
            if let Some(d) = self.positive_duration(table, "nuctl", key, Some(hint)) {
                *slot = d;
            }
        }
        if let Some(value) = table.get("images") {
            if let Some(text) = self.string(value, "nuctl.images") {
                match text {
                    "build" => nuctl.images = ImageMode::Build,
                    "prebuilt" => nuctl.images = ImageMode::Prebuilt,
                    other => self.error(
                        value.span(),
                        format!("unknown `images` `{other}`"),
                        Some(
                            "`images` is `build` (each deploy builds its image, needs Docker) \
                             or `prebuilt` (deploys run the images `fusionizer images` built)"
                                .to_string(),
                        ),
                    ),
                }
            }
        }
        if let Some(value) = table.get("invocation-url") {
            if let Some(text) = self.string(value, "nuctl.invocation-url") {
                match text {
                    "external" => nuctl.invocation_url = UrlPreference::External,
                    "internal" => nuctl.invocation_url = UrlPreference::Internal,
                    other => self.error(
                        value.span(),
                        format!("unknown `invocation-url` `{other}`"),
                        Some("`invocation-url` is `external` or `internal`".to_string()),
                    ),
                }
            }
        }
        nuctl
    }
}

impl Checker<'_> {
    /// On Kubernetes, `[nuctl] namespace` must be set. Without `--namespace` nuctl takes the
    /// kubeconfig context's namespace, possibly empty (pkg/nuctl/command/nuctl.go
    /// `resolveDefaultNamespace`), and Nuclio's Helm chart watches only its own namespace
    /// (`crdAccessMode: namespaced`), so a deploy elsewhere is never picked up and waits.
    /// (An empty `namespace` is refused where it is read.)
    fn require_namespace(&mut self, table: &DeTable<'_>) {
        if table.contains_key("namespace") {
            return;
        }
        let message = "`nuctl.namespace` must be set when `nuctl.platform = \"kube\"`: \
                       nuctl would take the kubeconfig context's namespace, and a Nuclio \
                       that does not watch it never deploys the function"
            .to_string();
        let hint = Some(
            "set `namespace` in `[nuctl]` to the namespace Nuclio was installed in, e.g. \
             `namespace = \"nuclio\"`"
                .to_string(),
        );
        match table.get("platform") {
            Some(value) => self.error(value.span(), message, hint),
            None => self.error_without_location(message, hint),
        }
    }
}

/// Why `host` cannot be an `allowed-hosts` entry, if it cannot.
fn allowed_host_problem(host: &str) -> Option<String> {
    if host == "*" {
        return None;
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    if host.contains("://") || host.contains('/') {
        return Some(format!("`{host}` is a URL, not a host"));
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return match inner.parse::<std::net::Ipv6Addr>() {
            Ok(_) => None,
            Err(_) => Some(format!("`{host}` is not an IPv6 address")),
        };
    }
    if name.contains(':') {
        return Some(format!(
            "`{host}` has a port: ports are not compared, list the host alone"
        ));
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.trim_end_matches('.').split('.').all(label_ok) {
        return Some(format!("`{host}` is not a host name"));
    }
    None
}

/// Why `origin` cannot be an `allowed-origins` entry, if it cannot.
fn allowed_origin_problem(origin: &str) -> Option<String> {
    if origin == "*" {
        return None;
    }
    let Ok(uri) = origin.parse::<hyper::Uri>() else {
        return Some(format!("`{origin}` is not an origin"));
    };
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Some(format!("`{origin}` has no scheme or no host"));
    };
    if !matches!(scheme, "http" | "https") {
        return Some(format!("`{origin}`: the scheme is `http` or `https`"));
    }
    if authority.as_str().contains('@') || origin != format!("{scheme}://{authority}") {
        return Some(format!(
            "`{origin}` is not an origin: it has more than a scheme, host and port"
        ));
    }
    allowed_host_problem(authority.host())
}

/// A path-valued setting as written in fusion.toml: `~` and `~/…` expand to the home directory;
/// a relative path is relative to fusion.toml's directory.
pub(crate) fn setting_path(root_dir: &Path, text: &str) -> PathBuf {
    let home = || std::env::var_os("HOME").map(PathBuf::from);
    let expanded = match text.strip_prefix('~') {
        Some("") => home(),
        Some(rest) if rest.starts_with('/') => home().map(|h| h.join(rest.trim_start_matches('/'))),
        _ => None,
    };
    let path = expanded.unwrap_or_else(|| PathBuf::from(text));
    if path.is_absolute() {
        path
    } else {
        root_dir.join(path)
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`, the portable shape of an environment variable name.
fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
