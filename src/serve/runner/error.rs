//! Why a control operation of the runner (an upload, a removal) did not go through, in the
//! runner's own words: busy, declared elsewhere, not found, a refused upload, a failed deploy.
//! The runner knows nothing of HTTP; `serve::http` maps each kind to a status in one place.

use crate::serve::uploads::UploadError;

/// What went wrong with an upload or a removal ([`super::Runner`]'s `Control`).
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// Another apply holds the platform's lock; nothing was changed. Carries the lock's own
    /// message (who holds it).
    #[error("another apply is changing the platform; retry shortly\n{0}")]
    Busy(String),
    /// The task is declared in fusion.toml with a path: its code is not changed by uploads.
    /// The message says where to change it instead.
    #[error("{0}")]
    Declared(String),
    /// A removal of a task that is not (or no longer) stored.
    #[error("no uploaded task `{0}`")]
    NotFound(String),
    /// The upload was refused (too large, not a zip, an invalid task), or storing it failed.
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// Deploying the uploaded task failed; the previous version keeps running.
    #[error("deploying task `{task}` failed; the previous version keeps running\n{reason}")]
    DeployFailed {
        /// The uploaded task.
        task: String,
        /// Why the deploy failed.
        reason: String,
    },
    /// Deploying without the removed task failed; it keeps running (the cause is in serve's log).
    #[error("removing task `{0}` failed; it keeps running (see serve's log)")]
    RemovalFailed(String),
    /// Something broke inside serve (a worker thread ended).
    #[error("{0}")]
    Internal(String),
}

/// The kind of a [`RunnerError`], for whoever answers it (`serve::http` turns it into a status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Try again later: the platform is busy.
    Busy,
    /// The request contradicts fusion.toml.
    Conflict,
    /// Nothing by that name.
    NotFound,
    /// The upload is larger than a limit.
    TooLarge,
    /// The request was understood but cannot be carried out (an invalid upload, a failed deploy).
    Invalid,
    /// serve failed.
    Internal,
}

impl RunnerError {
    /// What kind of failure this is.
    pub fn kind(&self) -> Kind {
        match self {
            RunnerError::Busy(_) => Kind::Busy,
            RunnerError::Declared(_) => Kind::Conflict,
            RunnerError::NotFound(_) => Kind::NotFound,
            RunnerError::Upload(
                UploadError::TooLarge { .. } | UploadError::UnpackedTooLarge { .. },
            ) => Kind::TooLarge,
            RunnerError::Upload(UploadError::Io(_))
            | RunnerError::RemovalFailed(_)
            | RunnerError::Internal(_) => Kind::Internal,
            RunnerError::Upload(_) | RunnerError::DeployFailed { .. } => Kind::Invalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> String {
        s.to_string()
    }

    #[test]
    fn each_error_has_its_kind() {
        let io = std::io::Error::other("disk");
        let kinds: [(RunnerError, Kind); 10] = [
            (RunnerError::Busy(text("held")), Kind::Busy),
            (RunnerError::Declared(text("declared")), Kind::Conflict),
            (RunnerError::NotFound(text("taskc")), Kind::NotFound),
            (
                UploadError::TooLarge { size: 2, limit: 1 }.into(),
                Kind::TooLarge,
            ),
            (
                UploadError::UnpackedTooLarge { limit: 1 }.into(),
                Kind::TooLarge,
            ),
            (UploadError::NotZip(text("no")).into(), Kind::Invalid),
            (UploadError::Io(io).into(), Kind::Internal),
            (
                RunnerError::DeployFailed {
                    task: text("c"),
                    reason: text("boom"),
                },
                Kind::Invalid,
            ),
            (RunnerError::RemovalFailed(text("taskc")), Kind::Internal),
            (RunnerError::Internal(text("panicked")), Kind::Internal),
        ];
        for (error, kind) in kinds {
            assert_eq!(error.kind(), kind, "{error}");
        }
    }

    #[test]
    fn the_runner_words_its_own_refusals_and_keeps_an_upload_s_words() {
        let busy = RunnerError::Busy(text("held by `fusionizer apply`"));
        assert_eq!(
            busy.to_string(),
            "another apply is changing the platform; retry shortly\nheld by `fusionizer apply`"
        );
        let missing = RunnerError::NotFound(text("taskc"));
        assert_eq!(missing.to_string(), "no uploaded task `taskc`");
        let failed = RunnerError::DeployFailed {
            task: text("taskc"),
            reason: text("`shop-taskc`: boom"),
        };
        assert_eq!(
            failed.to_string(),
            "deploying task `taskc` failed; the previous version keeps running\n`shop-taskc`: boom"
        );
        let removal = RunnerError::RemovalFailed(text("taskc"));
        assert_eq!(
            removal.to_string(),
            "removing task `taskc` failed; it keeps running (see serve's log)"
        );
        let large = RunnerError::from(UploadError::TooLarge { size: 2, limit: 1 });
        assert_eq!(
            large.to_string(),
            UploadError::TooLarge { size: 2, limit: 1 }.to_string()
        );
    }
}
