//! `capstan schema [KIND]`: the JSON Schema of the manifests (see
//! `capstan_model::schema`), as `schema/capstan.json` ships it.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::kinds;

pub fn print(kind: Option<&str>) -> anyhow::Result<ExitCode> {
    let schema = match kind {
        Some(kind) => capstan_model::schema::for_kind(kinds::parse(kind)?),
        None => capstan_model::schema::all(),
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&schema).context("printing the schema")?
    );
    Ok(ExitCode::SUCCESS)
}
