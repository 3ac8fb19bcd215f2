//! The security suite (issue 19, "Safe on a laptop"): one module per area, each test pinning a
//! way a web page, a client or a task could abuse `serve`, against the real binary.

mod workers;
