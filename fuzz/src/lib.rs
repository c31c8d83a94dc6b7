//! What the fuzz targets in `fuzz_targets/` share, and what the seed generator and the
//! crate's own tests need of them: the configuration written back as TOML (`config`),
//! and the endpoint harness with its input format (`endpoint`).

pub mod config;
pub mod endpoint;
