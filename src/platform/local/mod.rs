//! The embedded `local` platform: fused functions run as Python worker processes on this machine.
