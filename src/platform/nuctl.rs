//! The `nuctl` platform: real Nuclio (Docker or Kubernetes) driven through the `nuctl` CLI.
