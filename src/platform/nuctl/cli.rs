//! The one wrapper every `nuctl` call goes through.
//!
//! It resolves the binary (`[nuctl] binary`, overridden by env `FUSIONIZER_NUCTL`), adds the
//! global flags from `[nuctl]`, runs through [`crate::proc::Cmd`] with both streams captured, and
//! turns the outcome into a typed [`NuctlError`]: not installed, failed (with the command line and
//! its stderr framed), or unparsable output. nuctl writes its logs to stdout in a format that
//! changed between versions, so nothing here reads log lines: only `-o json` output is parsed,
//! and the "not found" answer nuctl prints instead of JSON (`No functions found`, exit 1).

use std::ffi::OsString;
use std::time::Duration;

use crate::config::NuctlConfig;
use crate::platform::PlatformError;
use crate::proc::{frame, Cmd, Output, ProcError};

/// The nuctl release this platform was written and tested against.
pub const NUCTL_VERSION: &str = "1.14.1";

pub use crate::contract::ENV_NUCTL as BINARY_ENV;

/// How long a `get`, `create` or `delete` may take before it counts as hung. A deploy builds an
/// image and waits for readiness: it may take `[nuctl] build-timeout` plus `readiness-timeout`.
const QUICK_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// Why a nuctl call failed.
#[derive(Debug, thiserror::Error)]
pub enum NuctlError {
    /// The binary is not there (or cannot be executed).
    #[error("could not run `{binary}`: the `nuctl` platform needs nuctl installed")]
    NotInstalled {
        binary: String,
        #[source]
        source: Option<std::io::Error>,
    },
    /// nuctl ran and failed; `output` holds both streams.
    #[error("`{command}` exited {status}")]
    Failed {
        command: String,
        status: i32,
        output: Output,
    },
    /// nuctl did not finish in time (it was killed).
    #[error("`{command}` did not finish within {}", humantime::format_duration(*.timeout))]
    Timeout { command: String, timeout: Duration },
    /// `-o json` output that is not the JSON nuctl documents.
    #[error("`{command}` printed output that is not the expected JSON")]
    Unparsable {
        command: String,
        #[source]
        source: serde_json::Error,
    },
}

impl NuctlError {
    /// The framed stderr (or stdout) of a failed run, for a `caused by:` line.
    pub fn detail(&self) -> Option<String> {
        match self {
            NuctlError::Failed { output, .. } => {
                let framed = frame(output.stderr.trim_start(), output.stdout.trim_start());
                (!framed.is_empty()).then(|| format!("nuctl printed{framed}"))
            }
            _ => None,
        }
    }
}

impl From<NuctlError> for PlatformError {
    fn from(err: NuctlError) -> Self {
        match err {
            NuctlError::NotInstalled { binary, source } => PlatformError::Unavailable {
                message: match source {
                    Some(e) => {
                        format!("could not run `{binary}` ({e}), which the `nuctl` platform needs")
                    }
                    None => format!("could not find `{binary}`, which the `nuctl` platform needs"),
                },
                hint: Some(install_hint()),
            },
            NuctlError::Failed {
                command,
                status,
                output,
            } => PlatformError::Other(format!(
                "`{command}` exited {status}{}",
                frame(output.stderr.trim_start(), output.stdout.trim_start())
            )),
            other => {
                let mut message = other.to_string();
                for cause in crate::error::sources(&other) {
                    message.push_str(&format!("\n  caused by: {cause}"));
                }
                PlatformError::Other(message)
            }
        }
    }
}

/// How to get nuctl, for `hint:` lines.
pub fn install_hint() -> String {
    format!(
        "install nuctl {NUCTL_VERSION} from https://github.com/nuclio/nuclio/releases \
         (e.g. `nuctl-{NUCTL_VERSION}-linux-amd64`, made executable, on PATH), or point \
         `[nuctl] binary` or `{BINARY_ENV}` at it"
    )
}

/// A configured nuctl: which binary, which global flags.
#[derive(Debug, Clone)]
pub struct Nuctl {
    binary: OsString,
    global: Vec<OsString>,
    deploy_timeout: Duration,
    quick_timeout: Duration,
}

impl Nuctl {
    /// From `[nuctl]`; `binary_override` is the value of `FUSIONIZER_NUCTL`, if set.
    pub fn new(config: &NuctlConfig, binary_override: Option<OsString>) -> Self {
        let binary = binary_override
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| OsString::from(&config.binary));
        let mut global: Vec<OsString> = Vec::new();
        if let Some(platform) = &config.platform {
            global.extend(["--platform".into(), platform.into()]);
        }
        if let Some(namespace) = &config.namespace {
            global.extend(["--namespace".into(), namespace.into()]);
        }
        if let Some(kubeconfig) = &config.kubeconfig {
            global.extend(["--kubeconfig".into(), kubeconfig.into()]);
        }
        Nuctl {
            binary,
            global,
            deploy_timeout: config.build_timeout + config.readiness_timeout,
            quick_timeout: QUICK_COMMAND_TIMEOUT,
        }
    }

    /// Limits every call (deploys included) to `timeout`; nuctl is killed when it passes.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.deploy_timeout = timeout;
        self.quick_timeout = timeout;
        self
    }

    /// The binary as configured (for messages).
    pub fn binary(&self) -> String {
        self.binary.to_string_lossy().into_owned()
    }

    /// `nuctl <args…> <global flags…>`, with its deadline: a deploy (or a `build`) gets `[nuctl]
    /// build-timeout` plus `readiness-timeout` and leads its own process group, so that when it
    /// is killed at the deadline what it started (the image build) goes too.
    pub fn command<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let cmd = Cmd::new(&self.binary)
            .args(args)
            .args(self.global.iter().cloned());
        if cmd
            .args
            .first()
            .is_some_and(|a| a == "deploy" || a == "build")
        {
            cmd.timeout(self.deploy_timeout).own_group()
        } else {
            cmd.timeout(self.quick_timeout)
        }
    }

    /// Runs `cmd` and returns its output whatever the exit status.
    pub async fn output(&self, cmd: &Cmd) -> Result<Output, NuctlError> {
        tracing::debug!(command = %cmd.display(), "running nuctl");
        cmd.output().await.map_err(|e| match e {
            ProcError::NotFound { .. } => NuctlError::NotInstalled {
                binary: self.binary(),
                source: None,
            },
            ProcError::Spawn { source, .. } => NuctlError::NotInstalled {
                binary: self.binary(),
                source: Some(source),
            },
            ProcError::Timeout { command, timeout } => NuctlError::Timeout { command, timeout },
            ProcError::Failed {
                command,
                status,
                stdout,
                stderr,
            } => NuctlError::Failed {
                command,
                status,
                output: Output {
                    status,
                    stdout,
                    stderr,
                },
            },
        })
    }

    /// Runs `cmd` and requires exit 0.
    pub async fn run(&self, cmd: &Cmd) -> Result<Output, NuctlError> {
        let output = self.output(cmd).await?;
        if output.status == 0 {
            Ok(output)
        } else {
            Err(NuctlError::Failed {
                command: cmd.display(),
                status: output.status,
                output,
            })
        }
    }

    /// Runs a `get … -o json`: `None` when nuctl answers "no match" (see [`is_not_found`]),
    /// else every object it printed (one object or an array of them).
    pub async fn get_json(&self, cmd: &Cmd) -> Result<Option<Vec<serde_json::Value>>, NuctlError> {
        let output = self.output(cmd).await?;
        if is_not_found(&output) {
            return Ok(None);
        }
        if output.status != 0 {
            return Err(NuctlError::Failed {
                command: cmd.display(),
                status: output.status,
                output,
            });
        }
        parse_json_output(&output.stdout)
            .map(Some)
            .map_err(|source| NuctlError::Unparsable {
                command: cmd.display(),
                source,
            })
    }
}

/// nuctl's "no match" answer, across versions: stdout that trims to exactly `No functions
/// found` or `No projects found`, whatever the exit code and whatever is on stderr.
///
/// In nuclio 1.14.1 (`pkg/nuctl/command/get.go`), a listing that matches nothing prints the line
/// with a newline and returns nil (exit 0); only a lookup by NAME that finds nothing is
/// `nuclio.ErrNotFound` (the line without a newline, exit 1). Older releases print the line
/// without a newline and exit 0 even for a lookup by name.
///
/// stderr is not read: client-go prints its warnings there (`W1207 … warnings.go:70] …`), and
/// so do the exec credential plugins a kubeconfig may name (client-go passes their stderr
/// through), on any command. nuctl itself prints an error either alone on stdout or on stderr
/// (cmd/nuctl/main.go), never beside the "no match" line.
pub fn is_not_found(output: &Output) -> bool {
    matches!(
        output.stdout.trim(),
        "No functions found" | "No projects found"
    )
}

/// Parses what `get -o json` printed: one object, or an array of objects (tab-indented either
/// way). Log lines nuctl may print first (with `--verbose`) never start a line with `{` or `[`,
/// so the JSON starts at the first line that does.
pub fn parse_json_output(stdout: &str) -> Result<Vec<serde_json::Value>, serde_json::Error> {
    let start = stdout
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .chain(std::iter::once(0))
        .filter(|&i| stdout[i..].starts_with(['{', '[']))
        .min()
        .unwrap_or(0);
    let mut values = Vec::new();
    for value in serde_json::Deserializer::from_str(&stdout[start..]).into_iter() {
        match value? {
            serde_json::Value::Array(items) => values.extend(items),
            other => values.push(other),
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_object_and_an_array_parse_alike() {
        let one = "{\n\t\"metadata\": {\n\t\t\"name\": \"a\"\n\t}\n}\n";
        let many =
            "[\n\t{\"metadata\": {\"name\": \"a\"}},\n\t{\"metadata\": {\"name\": \"b\"}}\n]\n";
        assert_eq!(parse_json_output(one).unwrap().len(), 1);
        assert_eq!(parse_json_output(many).unwrap().len(), 2);
    }

    #[test]
    fn log_lines_before_the_json_are_skipped() {
        let out = "24.03.21 12:56:11.769 \u{1b}[32m(D)\u{1b}[0m nuctl Getting functions {\"a\": 1}\n{\"metadata\": {\"name\": \"a\"}}";
        let values = parse_json_output(out).unwrap();
        assert_eq!(values[0]["metadata"]["name"], "a");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_json_output("{\"metadata\": ").is_err());
    }

    #[test]
    fn no_match_is_the_line_alone_whatever_the_exit_code_and_stderr() {
        let out = |status, stdout: &str, stderr: &str| Output {
            status,
            stdout: stdout.to_string(),
            stderr: stderr.to_string(),
        };
        // 1.14.1: a listing prints the line with a newline and exits 0; a lookup by name
        // without a newline and exits 1. Older: no newline, exit 0.
        assert!(is_not_found(&out(0, "No functions found\n", "")));
        assert!(is_not_found(&out(0, "No projects found\n", "")));
        assert!(is_not_found(&out(1, "No functions found", "")));
        assert!(is_not_found(&out(0, "No functions found", "")));
        assert!(!is_not_found(&out(1, "", "\nError - boom\n")));
        assert!(!is_not_found(&out(0, "No functions found\nmore", "")));
        // client-go and exec credential plugins warn on stderr, on every command.
        let warning = "W1207 19:00:00.000000   12345 warnings.go:70] v1 Endpoints is deprecated\n";
        assert!(is_not_found(&out(0, "No functions found\n", warning)));
        assert!(is_not_found(&out(1, "No functions found", warning)));
    }

    #[test]
    fn global_flags_follow_the_command() {
        let config = NuctlConfig {
            platform: Some("kube".into()),
            namespace: Some("nuclio".into()),
            kubeconfig: Some("/k/config".into()),
            ..NuctlConfig::default()
        };
        let nuctl = Nuctl::new(&config, Some("/opt/nuctl".into()));
        let cmd = nuctl.command(["get", "function", "-o", "json"]);
        assert_eq!(
            cmd.display(),
            "/opt/nuctl get function -o json --platform kube --namespace nuclio --kubeconfig /k/config"
        );
        assert_eq!(cmd.timeout, Some(QUICK_COMMAND_TIMEOUT));
        assert!(!cmd.own_group);
        // Every deploy has a deadline: build-timeout plus readiness-timeout (defaults 10m + 5m).
        let deploy = nuctl.command(["deploy", "x"]);
        assert_eq!(deploy.timeout, Some(Duration::from_secs(900)));
        assert!(deploy.own_group);
        let plain = Nuctl::new(&NuctlConfig::default(), Some("".into()));
        assert_eq!(plain.command(["version"]).display(), "nuctl version");
    }
}
