//! The advisory apply lock, one per project and platform, so two applies never run at once.
