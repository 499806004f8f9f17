//! The nodeadm user data, byte for byte against golden files in `tests/golden/`, and
//! read back the way nodeadm and cloud-init read it: as MIME multi-part, with the
//! NodeConfig part as YAML. `scripts/check-user-data.sh` runs cloud-init itself over
//! the same golden files (tests/tests/infra.rs).
//!
//! After an intended change: `UPDATE_GOLDEN=1 cargo test -p capstan-reconcile --test
//! bootstrap`, then read the diff.

use std::collections::BTreeMap;
use std::path::PathBuf;

use capstan_reconcile::bootstrap::{
    BootstrapError, EksNodeInput, MAX_USER_DATA_BYTES, NODE_CONFIG_CONTENT_TYPE, NodeTaint,
    TaintEffect, eks_user_data,
};

const CA: &str = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUMvakNDQWVhZ0F3SUJBZ0lCQURBTkJna3Foa2lHOXcwQkFRc0ZBREFWTVJNd0VRWURWUVFERXdwcmRXSmwKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=";

fn minimal() -> EksNodeInput {
    EksNodeInput {
        cluster_name: "demo".to_string(),
        api_server_endpoint:
            "https://0123456789ABCDEF0123456789ABCDEF.gr7.us-east-1.eks.amazonaws.com".to_string(),
        certificate_authority: CA.to_string(),
        service_cidr: "10.100.0.0/16".to_string(),
        ..Default::default()
    }
}

fn with_labels_and_taints() -> EksNodeInput {
    EksNodeInput {
        labels: BTreeMap::from([
            ("team".to_string(), "payments".to_string()),
            ("capstan.dev/pool".to_string(), "workers".to_string()),
            // Not self-settable: applied through the API, not by the kubelet.
            ("node-role.kubernetes.io/workers".to_string(), String::new()),
            (
                "node.kubernetes.io/lifecycle".to_string(),
                "spot".to_string(),
            ),
        ]),
        taints: vec![
            NodeTaint {
                key: "dedicated".to_string(),
                value: Some("payments".to_string()),
                effect: TaintEffect::NoSchedule,
            },
            NodeTaint {
                key: "example.com/draining".to_string(),
                value: None,
                effect: TaintEffect::NoExecute,
            },
        ],
        ..minimal()
    }
}

const SCRIPT: &str =
    "#!/bin/bash\nset -euo pipefail\necho \"capstan node $(hostname)\" > /etc/motd\n";

const CLOUD_CONFIG: &str = "#cloud-config\npackages:\n  - jq\nwrite_files:\n  - path: /etc/capstan/pool\n    content: workers\n    permissions: \"0644\"\nruncmd:\n  - [systemctl, enable, --now, amazon-ssm-agent]\n";

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.mime"))
}

/// Compares with the golden file, or rewrites it under `UPDATE_GOLDEN=1`.
fn assert_golden(name: &str, actual: &str) {
    let path = golden(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("writing {path:?}: {e}"));
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {path:?} (UPDATE_GOLDEN=1 writes it): {e}"));
    assert_eq!(
        actual, expected,
        "{name}: differs from {path:?} (UPDATE_GOLDEN=1 rewrites it)"
    );
}

/// One part of a MIME multi-part document.
#[derive(Debug)]
struct Part {
    headers: BTreeMap<String, String>,
    body: String,
}

/// A small MIME multi-part reader, as strict as the format: headers up to a blank
/// line, a quoted boundary parameter, parts between `--boundary` delimiter lines (the
/// line break before a delimiter belongs to it), a closing `--boundary--`.
fn parse_mime(doc: &str) -> (BTreeMap<String, String>, Vec<Part>) {
    let (head, body) = doc
        .split_once("\n\n")
        .expect("headers end with a blank line");
    let headers = parse_headers(head);
    assert_eq!(headers.get("mime-version").map(String::as_str), Some("1.0"));
    let content_type = &headers["content-type"];
    let boundary = content_type
        .strip_prefix("multipart/mixed; boundary=\"")
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("multipart/mixed with a quoted boundary");
    let open = format!("--{boundary}\n");
    let delimiter = format!("\n--{boundary}");
    let rest = body
        .strip_prefix(&open)
        .expect("the body starts with the first delimiter");
    let rest = rest
        .strip_suffix(&format!("\n--{boundary}--\n"))
        .expect("the body ends with the closing delimiter");
    let parts = rest
        .split(&format!("{delimiter}\n"))
        .map(|part| {
            assert!(!part.contains(&delimiter), "a delimiter inside a part");
            let (head, body) = part.split_once("\n\n").expect("part headers");
            Part {
                headers: parse_headers(head),
                body: body.to_string(),
            }
        })
        .collect();
    (headers, parts)
}

fn parse_headers(head: &str) -> BTreeMap<String, String> {
    head.lines()
        .map(|line| {
            let (name, value) = line.split_once(": ").expect("Name: value");
            (name.to_ascii_lowercase(), value.to_string())
        })
        .collect()
}

fn node_config(part: &Part) -> serde_json::Value {
    assert_eq!(part.headers["content-type"], NODE_CONFIG_CONTENT_TYPE);
    serde_saphyr::from_str(&part.body).expect("the NodeConfig part is YAML")
}

fn render(input: &EksNodeInput) -> String {
    eks_user_data(input).expect("renders")
}

#[test]
fn minimal_node_config() {
    let doc = render(&minimal());
    assert_golden("minimal", &doc);
    let (_, parts) = parse_mime(&doc);
    assert_eq!(parts.len(), 1);
    let config = node_config(&parts[0]);
    assert_eq!(
        config,
        serde_json::json!({
            "apiVersion": "node.eks.aws/v1alpha1",
            "kind": "NodeConfig",
            "spec": {"cluster": {
                "name": "demo",
                "apiServerEndpoint": "https://0123456789ABCDEF0123456789ABCDEF.gr7.us-east-1.eks.amazonaws.com",
                "certificateAuthority": CA,
                "cidr": "10.100.0.0/16",
            }},
        })
    );
}

#[test]
fn labels_and_taints_become_kubelet_flags_without_labels_the_kubelet_may_not_set() {
    let doc = render(&with_labels_and_taints());
    assert_golden("labels-and-taints", &doc);
    let (_, parts) = parse_mime(&doc);
    let config = node_config(&parts[0]);
    assert_eq!(
        config["spec"]["kubelet"]["flags"],
        serde_json::json!([
            "--node-labels=capstan.dev/pool=workers,node.kubernetes.io/lifecycle=spot,team=payments",
            "--register-with-taints=dedicated=payments:NoSchedule,example.com/draining:NoExecute",
        ])
    );
}

#[test]
fn a_class_script_is_a_shell_script_part() {
    let input = EksNodeInput {
        extra_user_data: Some(SCRIPT.to_string()),
        ..with_labels_and_taints()
    };
    let doc = render(&input);
    assert_golden("script", &doc);
    let (_, parts) = parse_mime(&doc);
    assert_eq!(parts.len(), 2);
    node_config(&parts[0]);
    assert_eq!(
        parts[1].headers["content-type"],
        "text/x-shellscript; charset=\"us-ascii\""
    );
    assert_eq!(parts[1].body, SCRIPT, "the script reads back exactly");
}

#[test]
fn a_class_cloud_config_is_a_cloud_config_part() {
    let input = EksNodeInput {
        extra_user_data: Some(CLOUD_CONFIG.to_string()),
        ..minimal()
    };
    let doc = render(&input);
    assert_golden("cloud-config", &doc);
    let (_, parts) = parse_mime(&doc);
    assert_eq!(
        parts[1].headers["content-type"],
        "text/cloud-config; charset=\"us-ascii\""
    );
    assert_eq!(parts[1].body, CLOUD_CONFIG);
    let config: serde_json::Value = serde_saphyr::from_str(&parts[1].body).expect("YAML");
    assert_eq!(config["packages"], serde_json::json!(["jq"]));
}

#[test]
fn output_is_deterministic() {
    let input = EksNodeInput {
        extra_user_data: Some(SCRIPT.to_string()),
        ..with_labels_and_taints()
    };
    assert_eq!(render(&input), render(&input.clone()));
}

#[test]
fn a_boundary_inside_the_class_user_data_is_avoided() {
    let script = "#!/bin/sh\n# ==CAPSTAN-NODEADM-BOUNDARY== and ==CAPSTAN-NODEADM-BOUNDARY==-1\n--==CAPSTAN-NODEADM-BOUNDARY==\n";
    let doc = render(&EksNodeInput {
        extra_user_data: Some(script.to_string()),
        ..minimal()
    });
    let (headers, parts) = parse_mime(&doc);
    assert!(headers["content-type"].ends_with("boundary=\"==CAPSTAN-NODEADM-BOUNDARY==-2\""));
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[1].body, script);
}

#[test]
fn non_ascii_user_data_says_utf8() {
    let script = "#!/bin/sh\necho 'héllo'\n";
    let doc = render(&EksNodeInput {
        extra_user_data: Some(script.to_string()),
        ..minimal()
    });
    let (_, parts) = parse_mime(&doc);
    assert_eq!(
        parts[1].headers["content-type"],
        "text/x-shellscript; charset=\"utf-8\""
    );
    assert_eq!(parts[1].headers["content-transfer-encoding"], "8bit");
}

#[test]
fn values_cannot_change_the_yaml_structure() {
    // A cluster name cannot hold these (refused), but the endpoint's host is only
    // checked for printable characters: it stays one quoted scalar.
    let doc = render(&EksNodeInput {
        api_server_endpoint: "https://x\"\\:#{}[]".to_string(),
        ..minimal()
    });
    let (_, parts) = parse_mime(&doc);
    assert_eq!(
        node_config(&parts[0])["spec"]["cluster"]["apiServerEndpoint"],
        "https://x\"\\:#{}[]"
    );
}

#[test]
fn refusals() {
    let err = |input: EksNodeInput| eks_user_data(&input).expect_err("refused");
    assert_eq!(
        err(EksNodeInput {
            extra_user_data: Some(
                "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=x\n\n--x--\n"
                    .to_string()
            ),
            ..minimal()
        }),
        BootstrapError::UserDataIsMime
    );
    assert!(matches!(
        err(EksNodeInput {
            extra_user_data: Some("echo hello\n".to_string()),
            ..minimal()
        }),
        BootstrapError::UnrecognisedUserData { start } if start == "echo hello\n"
    ));
    let big = format!("#!/bin/sh\n{}\n", "#".repeat(MAX_USER_DATA_BYTES));
    let too_large = err(EksNodeInput {
        extra_user_data: Some(big),
        ..minimal()
    });
    assert!(matches!(
        too_large,
        BootstrapError::TooLarge { limit: 16384, .. }
    ));
    assert!(too_large.to_string().contains("EC2's limit of 16384 bytes"));

    for (input, field) in [
        (
            EksNodeInput {
                cluster_name: String::new(),
                ..minimal()
            },
            "name",
        ),
        (
            EksNodeInput {
                api_server_endpoint: "http://x".to_string(),
                ..minimal()
            },
            "apiServerEndpoint",
        ),
        (
            EksNodeInput {
                certificate_authority: "-----BEGIN CERTIFICATE-----".to_string(),
                ..minimal()
            },
            "certificateAuthority",
        ),
        (
            EksNodeInput {
                service_cidr: "10.100.0.0".to_string(),
                ..minimal()
            },
            "cidr",
        ),
    ] {
        assert!(
            matches!(err(input), BootstrapError::InvalidCluster { field: f, .. } if f == field),
            "{field}"
        );
    }
    assert!(matches!(
        err(EksNodeInput {
            labels: BTreeMap::from([("a".to_string(), "b,c=d".to_string())]),
            ..minimal()
        }),
        BootstrapError::InvalidLabel { .. }
    ));
    assert!(matches!(
        err(EksNodeInput {
            taints: vec![NodeTaint {
                key: "a=b".to_string(),
                value: None,
                effect: TaintEffect::NoSchedule
            }],
            ..minimal()
        }),
        BootstrapError::InvalidTaint { .. }
    ));
}
