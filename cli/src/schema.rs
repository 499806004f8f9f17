//! `capstan schema`.

use std::process::ExitCode;

pub fn print(_kind: Option<&str>) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
