//! The CLI's configuration file: named contexts, like kubectl's kubeconfig.
//!
//! `$CAPSTAN_CONFIG`, else `$XDG_CONFIG_HOME/capstan/config.yaml`, else
//! `~/.config/capstan/config.yaml`. With no file, the one context is `local`.
//!
//! ```yaml
//! current-context: moto
//! contexts:
//!   - name: local
//!     local: {dir: .capstan}
//!   - name: moto
//!     endpoint: {url: "http://127.0.0.1:5000", installation: capstan}
//!   - name: prod
//!     aws: {region: eu-west-1, profile: ops, installation: capstan}
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

/// The name of the built-in context, present whether or not the file names it.
pub const LOCAL: &str = "local";
/// Where the built-in local context keeps its state, relative to the working directory.
pub const LOCAL_DIR: &str = ".capstan";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    #[serde(default)]
    pub contexts: Vec<NamedContext>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamedContext {
    pub name: String,
    #[serde(flatten)]
    pub context: Context,
}

/// Where a context's commands go. Exactly one of the three.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Context {
    /// The local control plane: its state lives in `dir`.
    Local { dir: PathBuf },
    /// An AWS-compatible endpoint (moto_server, LocalStack) running `capstan run`.
    Endpoint {
        url: String,
        installation: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
    },
    /// An installation in AWS itself: the default credential chain, or `profile`.
    Aws {
        region: String,
        installation: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
    },
}

impl Context {
    /// One line for `config get-contexts`.
    pub fn describe(&self) -> String {
        match self {
            Context::Local { dir } => format!("local control plane in {}", dir.display()),
            Context::Endpoint {
                url, installation, ..
            } => format!("endpoint {url}, installation {installation}"),
            Context::Aws {
                region,
                installation,
                profile,
            } => match profile {
                Some(p) => format!("AWS {region}, installation {installation}, profile {p}"),
                None => format!("AWS {region}, installation {installation}"),
            },
        }
    }
}

/// Where the configuration file is.
pub fn path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("CAPSTAN_CONFIG") {
        return Ok(PathBuf::from(p));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("capstan").join("config.yaml"));
    }
    match std::env::var_os("HOME") {
        Some(home) => Ok(PathBuf::from(home)
            .join(".config")
            .join("capstan")
            .join("config.yaml")),
        None => {
            bail!("cannot find the configuration file: set CAPSTAN_CONFIG, XDG_CONFIG_HOME or HOME")
        }
    }
}

impl Config {
    /// The file at `path`, or an empty configuration when there is none.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_saphyr::from_str(&text).with_context(|| {
            format!(
                "reading {}: fix the file or remove it (see `capstan config --help`)",
                path.display()
            )
        })
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_saphyr::to_string(self).context("writing the configuration")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// Every context, the built-in `local` included (unless the file redefines it).
    pub fn contexts(&self) -> Vec<NamedContext> {
        let mut all = self.contexts.clone();
        if !all.iter().any(|c| c.name == LOCAL) {
            all.insert(
                0,
                NamedContext {
                    name: LOCAL.to_string(),
                    context: Context::Local {
                        dir: PathBuf::from(LOCAL_DIR),
                    },
                },
            );
        }
        all
    }

    pub fn current(&self) -> &str {
        self.current_context.as_deref().unwrap_or(LOCAL)
    }

    /// The context named `name` (the current one when None).
    pub fn resolve(&self, name: Option<&str>) -> anyhow::Result<NamedContext> {
        let name = name.unwrap_or(self.current());
        match self.contexts().into_iter().find(|c| c.name == name) {
            Some(c) => Ok(c),
            None => {
                let known: Vec<String> = self.contexts().into_iter().map(|c| c.name).collect();
                bail!(
                    "no context named {name:?} (known: {}): create it with `capstan config set-context {name} --endpoint URL --installation NAME` (or --region, or --local DIR)",
                    known.join(", ")
                )
            }
        }
    }

    /// Adds or replaces the context `name`.
    pub fn set(&mut self, name: &str, context: Context) {
        match self.contexts.iter_mut().find(|c| c.name == name) {
            Some(existing) => existing.context = context,
            None => self.contexts.push(NamedContext {
                name: name.to_string(),
                context,
            }),
        }
    }
}
