//! The nuctl platform under test: the fake `nuctl` (`tests/fake_nuctl/nuctl`), the quickstart
//! deployed through it, and venvs holding the Nuclio SDK.

use std::path::{Path, PathBuf};

use super::{cache_dir, exited, quickstart, TestEnv};

/// The fake `nuctl`, built from Nuclio's source (its own suite: `tests/fake_nuctl`).
pub(crate) const FAKE_NUCTL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fake_nuctl/nuctl");

/// The quickstart on `platform = "nuctl"`, and the fake's state directory.
pub(crate) fn quickstart_on_nuctl() -> (TestEnv, PathBuf) {
    let env = quickstart();
    let toml = env.project().join("fusion.toml");
    let text = std::fs::read_to_string(&toml).unwrap().replace(
        "name = \"quickstart\"\n",
        "name = \"quickstart\"\nplatform = \"nuctl\"\n",
    );
    std::fs::write(&toml, format!("{text}\n[nuctl]\nplatform = \"local\"\n")).unwrap();
    let state = env.root().join("nuctl-state");
    std::fs::create_dir_all(&state).unwrap();
    (env, state)
}

/// Runs `fusionizer ARGS` on the fake nuctl keeping its state in `state`, with the fake's
/// `fake` variables (e.g. a failure to inject).
pub(crate) fn run_nuctl(
    env: &TestEnv,
    state: &Path,
    fake: &[(&str, &str)],
    args: &[&str],
) -> std::process::Output {
    let mut cmd = env.cmd();
    cmd.env("FUSIONIZER_NUCTL", FAKE_NUCTL)
        .env("FAKE_NUCTL_DIR", state);
    for (k, v) in fake {
        cmd.env(k, v);
    }
    cmd.args(args).output().expect("run fusionizer")
}

/// [`run_nuctl`], asserting the exit code (else the whole transcript).
pub(crate) fn expect_nuctl(
    env: &TestEnv,
    state: &Path,
    fake: &[(&str, &str)],
    args: &[&str],
    code: i32,
) -> std::process::Output {
    exited(run_nuctl(env, state, fake, args), args, code)
}

/// The python of a venv named `name` under the shared test cache, holding `nuclio-sdk==0.6.3`,
/// `msgpack` (which Nuclio's own wrapper needs when the fake serves functions in it, with
/// `FUSIONIZER_NUCLIO_UPSTREAM` set) and `extra` packages; built once (concurrent builders wait
/// for each other). pip runs as `python -m pip`: a copied target directory keeps venvs whose
/// `pip` script still names the original's interpreter.
pub(crate) fn sdk_venv_python(name: &str, extra: &[&str]) -> PathBuf {
    let cache = cache_dir();
    let venv = cache.join(name);
    let python = venv.join("bin/python");
    if python.is_file() && venv.join("ready-msgpack").is_file() {
        return python;
    }
    std::fs::create_dir_all(&cache).unwrap();
    // One builder at a time: `flock` through the shell keeps this std-only.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(
            "venv=$1; lock=$2; shift 2; \
             { flock 9 && { [ -f \"$venv/ready-msgpack\" ] || { python3 -m venv \"$venv\" && \
             \"$venv/bin/python\" -m pip install -q nuclio-sdk==0.6.3 msgpack==1.0.8 \"$@\" && \
             touch \"$venv/ready-msgpack\"; }; }; } \
             9>\"$lock\"",
        )
        .arg("sh")
        .arg(&venv)
        .arg(cache.join(format!("{name}.lock")))
        .args(extra)
        .status()
        .unwrap();
    assert!(status.success(), "could not build the `{name}` venv");
    python
}
