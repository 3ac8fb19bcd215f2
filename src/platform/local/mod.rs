//! The embedded `local` platform: fused functions run as Python worker processes on this machine.

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::Config;
use crate::fuse::Artifact;
use crate::platform::{
    DeployProgress, HostOptions, Invoker, LiveFunction, Platform, PlatformError,
};

// INTEGRATION PLACEHOLDER: replaced by the local platform work; must not survive integration.
pub struct LocalPlatform {
    _config: Config,
}

impl LocalPlatform {
    pub fn new(config: &Config, host: Option<HostOptions>) -> Result<Self, PlatformError> {
        let _ = host;
        Ok(LocalPlatform {
            _config: config.clone(),
        })
    }
}

fn missing() -> PlatformError {
    PlatformError::Other("the `local` platform is not built yet".to_string())
}

#[async_trait]
impl Platform for LocalPlatform {
    fn kind(&self) -> &'static str {
        "local"
    }
    fn identity(&self) -> String {
        "local".to_string()
    }
    async fn list(&self, _project: &str) -> Result<Vec<LiveFunction>, PlatformError> {
        Err(missing())
    }
    async fn get(&self, _name: &str) -> Result<Option<LiveFunction>, PlatformError> {
        Err(missing())
    }
    async fn deploy(&self, _a: &Artifact, _p: &dyn DeployProgress) -> Result<(), PlatformError> {
        Err(missing())
    }
    async fn delete(&self, _name: &str, _force: bool) -> Result<(), PlatformError> {
        Err(missing())
    }
    async fn invoker(&self, _name: &str) -> Result<Arc<dyn Invoker>, PlatformError> {
        Err(missing())
    }
}
