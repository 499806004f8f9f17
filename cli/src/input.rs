//! Reading manifests from files, directories and standard input.

use std::io::Read;
use std::path::{Path, PathBuf};

use capstan_model::Object;
use capstan_model::manifest::{self, MAX_MANIFEST_BYTES, Manifests};

/// Every object in `paths`, or a report of every error in them (files that cannot be
/// read included). A directory contributes its .yaml, .yml and .json files, in name order.
pub fn read(paths: &[PathBuf]) -> Result<Vec<Object>, String> {
    read_all(paths, false).map(|m| m.objects)
}

/// As [`read`], keeping Kubernetes workload objects (Deployments, DaemonSets,
/// PodDisruptionBudgets, Pods) for `capstan up`'s in-memory workload clusters.
pub fn read_with_workload(paths: &[PathBuf]) -> Result<Manifests, String> {
    read_all(paths, true)
}

fn read_all(paths: &[PathBuf], keep_workload: bool) -> Result<Manifests, String> {
    let mut sources = Vec::new();
    let mut problems = String::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            match std::io::stdin()
                .take(MAX_MANIFEST_BYTES as u64 + 1)
                .read_to_string(&mut text)
            {
                Ok(_) => sources.push(("-".to_string(), text)),
                Err(e) => problems.push_str(&format!("-: cannot read standard input: {e}\n")),
            }
        } else if path.is_dir() {
            match manifest_files(path) {
                Ok(files) if files.is_empty() => problems.push_str(&format!(
                    "{}: no .yaml, .yml or .json files in this directory\n",
                    path.display()
                )),
                Ok(files) => {
                    for f in files {
                        read_file(&f, &mut sources, &mut problems);
                    }
                }
                Err(e) => problems.push_str(&format!(
                    "{}: cannot list the directory: {e}\n",
                    path.display()
                )),
            }
        } else {
            read_file(path, &mut sources, &mut problems);
        }
    }
    let result = if keep_workload {
        manifest::read_with_workload(&sources)
    } else {
        manifest::read_sources(&sources).map(|objects| Manifests {
            objects,
            workload: Vec::new(),
        })
    };
    match result {
        Ok(m) if problems.is_empty() && m.objects.is_empty() && m.workload.is_empty() => {
            let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            Err(format!(
                "{}: no objects: the manifests hold no document with a kind; write at least one object (see examples/quickstart.yaml)\n",
                names.join(", ")
            ))
        }
        Ok(m) if problems.is_empty() => Ok(m),
        Ok(_) => Err(problems),
        Err(errors) => {
            let count = errors.count();
            Err(format!("{problems}{errors}\n{count} error(s) found\n"))
        }
    }
}

fn read_file(path: &Path, sources: &mut Vec<(String, String)>, problems: &mut String) {
    let name = path.display().to_string();
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if size > MAX_MANIFEST_BYTES as u64 {
        problems.push_str(&format!(
            "{name}: is {size} bytes, more than the limit of {MAX_MANIFEST_BYTES} bytes: split it into several files\n"
        ));
        return;
    }
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => sources.push((name, text)),
            Err(_) => problems.push_str(&format!("{name}: is not UTF-8 text: save it as UTF-8\n")),
        },
        Err(e) => problems.push_str(&format!("{name}: cannot read: {e}\n")),
    }
}

fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        })
        .collect();
    files.sort();
    Ok(files)
}
