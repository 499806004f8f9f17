//! Kubernetes version syntax (`v1.31.2`), which a Cluster, a Machine and every
//! Machine template must give.

use super::Errors;

/// `v<major>.<minor>.<patch>`, e.g. v1.31.2.
pub fn is_kubernetes_version(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('v') else {
        return false;
    };
    let parts: Vec<&str> = rest.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 9
                && p.chars().all(|c| c.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
        })
}

pub(super) fn version(v: &mut Errors, path: &str, value: &str) {
    if value.is_empty() {
        v.push(
            path,
            "is required",
            "set the Kubernetes version, e.g. v1.31.2",
        );
    } else if !is_kubernetes_version(value) {
        v.push(
            path,
            format!("{value:?} is not a version of the form v<major>.<minor>.<patch>"),
            "write it like v1.31.2",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_version_format() {
        assert!(is_kubernetes_version("v1.31.2"));
        for bad in ["1.31.2", "v1.31", "v1.31.02", "v1.31.2-eks", "v1..2"] {
            assert!(!is_kubernetes_version(bad), "{bad}");
        }
    }
}
