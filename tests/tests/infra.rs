//! The offline checks of infra/template.yaml are real: `scripts/check-infra.sh` (cfn-lint
//! before and after the SAM transform, checkov, parliament and the project's own IAM
//! rules, and the workload clusters' RBAC manifest) passes on the template and fails on
//! copies with one deliberate mistake each, naming the check that caught it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// Runs every (template, RBAC manifest) check at once: each is a few Python processes,
/// mostly waiting on one core, and there are fifteen of them.
fn check_all(cases: &[(PathBuf, PathBuf)]) -> Vec<Output> {
    std::thread::scope(|scope| {
        let running: Vec<_> = cases
            .iter()
            .map(|(template, rbac)| scope.spawn(move || check_with_rbac(template, rbac)))
            .collect();
        running
            .into_iter()
            .map(|check| check.join().expect("a check's thread"))
            .collect()
    })
}

fn check_with_rbac(template: &Path, rbac: &Path) -> Output {
    Command::new("bash")
        .arg(repo().join("scripts/check-infra.sh"))
        .arg(template)
        .arg(rbac)
        .current_dir(repo())
        .output()
        .expect("running bash scripts/check-infra.sh")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A copy of the template with the first `from` replaced by `to`.
fn broken_copy(dir: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    broken_copy_of("infra/template.yaml", dir, name, from, to)
}

/// A copy of the repository's file `original` with the first `from` replaced by `to`.
fn broken_copy_of(original: &str, dir: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo().join(original)).expect("the original");
    assert!(text.contains(from), "{name}: {from:?} is not in {original}");
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text.replacen(from, to, 1)).expect("writing the copy");
    path
}

#[test]
fn the_template_passes_every_offline_check_and_each_deliberate_mistake_fails_one() {
    let dir = std::env::temp_dir().join(format!("capstan-infra-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let guarded_terminate = r#"                Action: ec2:TerminateInstances
                Resource:
                  Fn::Sub: "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*"
                Condition:
                  StringEquals:
                    aws:ResourceTag/capstan.dev/installation:
                      Ref: InstallationName
"#;
    let broken_templates = [
        // TerminateInstances on any instance, without the installation's tag: the
        // wildcard Karpenter's policy exists to prevent.
        (
            broken_copy(
                &dir,
                "terminate-anything",
                guarded_terminate,
                "                Action: ec2:TerminateInstances\n                Resource: \"*\"\n",
            ),
            "CKV_AWS_111",
        ),
        // Scoped to instances but without the tag condition: checkov is content, the
        // project's own IAM rules (scripts/infra/check_iam.py) are not.
        (
            broken_copy(
                &dir,
                "terminate-untagged",
                guarded_terminate,
                "                Action: ec2:TerminateInstances\n                Resource:\n                  Fn::Sub: \"arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*\"\n",
            ),
            "without the condition aws:ResourceTag/capstan.dev/installation",
        ),
        (
            broken_copy(
                &dir,
                "misspelled",
                "VisibilityTimeout: 270\n      SqsManagedSseEnabled: true\n      RedrivePolicy:\n        deadLetterTargetArn:\n          Fn::GetAtt: [DeadLetterQueue, Arn]",
                "VisibilityTimout: 270\n      SqsManagedSseEnabled: true\n      RedrivePolicy:\n        deadLetterTargetArn:\n          Fn::GetAtt: [DeadLetterQueue, Arn]",
            ),
            "E3002",
        ),
        // IAM backs the secure defaults (issue 12, item 5): each condition removed or
        // inverted is named by scripts/infra/check_iam.py.
        // IMDSv1 allowed: the instance without ec2:MetadataHttpTokens = required.
        (
            broken_copy(
                &dir,
                "imds-optional",
                "                    ec2:MetadataHttpTokens: required\n",
                "",
            ),
            "without the condition ec2:MetadataHttpTokens = 'required'",
        ),
        // Unencrypted volumes allowed: the volume without ec2:Encrypted = true.
        (
            broken_copy(
                &dir,
                "unencrypted-volumes",
                "                  Bool:\n                    ec2:Encrypted: \"true\"\n",
                "",
            ),
            "without the condition Bool ec2:Encrypted = true",
        ),
        // The image owner condition inverted: any image except the allowed owners'.
        (
            broken_copy(
                &dir,
                "any-image-owner",
                "                  StringEquals:\n                    ec2:Owner:\n",
                "                  StringNotEquals:\n                    ec2:Owner:\n",
            ),
            "without the condition ec2:Owner = the AllowedImageOwners parameter",
        ),
        // The work queue's policy without its Deny: any principal whose own policy
        // allows SendMessage could feed every reconciler.
        (
            broken_copy(
                &dir,
                "queue-without-deny",
                "          - Sid: NoOtherSender\n            Effect: Deny\n            Principal: \"*\"\n            Action: sqs:SendMessage\n            Resource:\n              Fn::GetAtt: [WorkQueue, Arn]\n            Condition:\n              ArnNotEquals:\n                aws:SourceArn:\n                  - Fn::GetAtt: [ClusterReconcilerRule, Arn]\n                  - Fn::GetAtt: [DeploymentReconcilerRule, Arn]\n                  - Fn::GetAtt: [MachineSetReconcilerRule, Arn]\n                  - Fn::GetAtt: [MachineReconcilerRule, Arn]\n                  - Fn::GetAtt: [HealthCheckReconcilerRule, Arn]\n                  - Fn::GetAtt: [InstanceEventsRule, Arn]\n                aws:PrincipalArn:\n                  - Fn::GetAtt: [ClusterReconcilerRole, Arn]\n                  - Fn::GetAtt: [DeploymentReconcilerRole, Arn]\n                  - Fn::GetAtt: [MachineSetReconcilerRole, Arn]\n                  - Fn::GetAtt: [MachineReconcilerRole, Arn]\n                  - Fn::GetAtt: [HealthCheckReconcilerRole, Arn]\n",
                "",
            ),
            "nothing denies sqs:SendMessage on arn:aws:sqs:us-east-1:123456789012:capstan-work",
        ),
        // The Deny lets another role through instead of one that re-queues: a sender
        // other than the rules, and that reconciler's Bus::requeue refused.
        (
            broken_copy(
                &dir,
                "queue-deny-lets-another-role",
                "                aws:PrincipalArn:\n                  - Fn::GetAtt: [ClusterReconcilerRole, Arn]\n",
                "                aws:PrincipalArn:\n                  - Fn::GetAtt: [DriftSweepRole, Arn]\n",
            ),
            "it lets ['arn:aws:iam::123456789012:role/DriftSweepRole-placeholder'] send besides",
        ),
        // The dispatcher may invoke every function of the account (issue 16): least
        // privilege lost. checkov only refuses Resource "*"; the project's rule refuses
        // any function that is not one of the stack's, named.
        (
            broken_copy(
                &dir,
                "invoke-any-function",
                "                Action: lambda:InvokeFunction\n                Resource:\n                  - Fn::GetAtt: [ClusterReconcilerFunction, Arn]\n",
                "                Action: lambda:InvokeFunction\n                Resource:\n                  - Fn::Sub: \"arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:*\"\n",
            ),
            "lambda:InvokeFunction on 'arn:aws:lambda:us-east-1:123456789012:function:*': only the template's own functions",
        ),
        // Workload-cluster access (issue 13): DescribeCluster on any resource, and the
        // kubeconfig secrets widened from the listed ones to every secret.
        (
            broken_copy(
                &dir,
                "describe-any-cluster",
                "                Action: eks:DescribeCluster\n                Resource:\n                  Fn::Sub: \"arn:${AWS::Partition}:eks:*:${AWS::AccountId}:cluster/*\"\n",
                "                Action: eks:DescribeCluster\n                Resource: \"*\"\n",
            ),
            "eks:DescribeCluster on Resource '*'",
        ),
        (
            broken_copy(
                &dir,
                "read-any-secret",
                "                    Resource:\n                      Ref: KubeconfigSecretArns\n",
                "                    Resource: \"*\"\n",
            ),
            "secretsmanager:GetSecretValue on Resource '*'",
        ),
        (
            broken_copy(
                &dir,
                "read-all-named-secrets",
                "                    Resource:\n                      Ref: KubeconfigSecretArns\n",
                "                    Resource:\n                      Fn::Sub: \"arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:*\"\n",
            ),
            "only the secrets the KubeconfigSecretArns parameter lists",
        ),
        (
            broken_copy(
                &dir,
                "arm65",
                "        - arm64\n      MemorySize: 256\n      Timeout: 30\n      Role:\n        Fn::GetAtt: [StreamRouterRole, Arn]",
                "        - arm65\n      MemorySize: 256\n      Timeout: 30\n      Role:\n        Fn::GetAtt: [StreamRouterRole, Arn]",
            ),
            "arm65",
        ),
    ];

    // The RBAC manifest: a verb the port does not use, and a wildcard.
    let broken_rbac = [
        (
            broken_copy_of(
                "infra/rbac/capstan-workload.yaml",
                &dir,
                "rbac-watch-pods",
                "    resources: [pods]\n    verbs: [get, list]\n",
                "    resources: [pods]\n    verbs: [get, list, watch]\n",
            ),
            "verbs ['watch'] on 'pods' go beyond the workload port's ['get', 'list']",
        ),
        (
            broken_copy_of(
                "infra/rbac/capstan-workload.yaml",
                &dir,
                "rbac-any-node-verb",
                "    resources: [nodes]\n    verbs: [get, list, patch, delete]\n",
                "    resources: [nodes]\n    verbs: [\"*\"]\n",
            ),
            "verbs ['*'] has a wildcard",
        ),
        (
            broken_copy_of(
                "infra/rbac/capstan-workload.yaml",
                &dir,
                "rbac-secrets",
                "    resources: [pods]\n",
                "    resources: [pods, secrets]\n",
            ),
            "resource 'secrets' in API group '' is not one the workload port uses",
        ),
    ];

    let template = repo().join("infra/template.yaml");
    let rbac = repo().join("infra/rbac/capstan-workload.yaml");
    let mut cases = vec![(template.clone(), rbac.clone())];
    let mut expected = Vec::new();
    for (path, caught_by) in broken_templates {
        expected.push((path.clone(), caught_by));
        cases.push((path, rbac.clone()));
    }
    for (path, caught_by) in broken_rbac {
        expected.push((path.clone(), caught_by));
        cases.push((template.clone(), path));
    }
    let outputs = check_all(&cases);
    assert!(
        outputs[0].status.success(),
        "the template fails:\n{}",
        text(&outputs[0])
    );
    for ((path, caught_by), out) in expected.iter().zip(&outputs[1..]) {
        let said = text(out);
        assert!(
            !out.status.success(),
            "{} passed the checks:\n{said}",
            path.display()
        );
        assert!(
            said.contains(caught_by),
            "{}: expected {caught_by:?} in:\n{said}",
            path.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 16: an idle installation costs less than $1 a month, computed from the
/// template by scripts/cost.py (alarms, SQS pollers, scheduled runs).
#[test]
fn an_idle_installation_costs_less_than_a_dollar_a_month() {
    let out = Command::new("python3")
        .arg(repo().join("scripts/cost.py"))
        .arg(repo().join("infra/template.yaml"))
        .args(["--max", "1.00"])
        .current_dir(repo())
        .output()
        .expect("running python3 scripts/cost.py");
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("2 alarms"), "{said}");
    assert!(said.contains("1 SQS event source mappings"), "{said}");
}

/// cloud-init itself reads the nodeadm user data Capstan writes (the golden files of
/// shared/reconcile/tests/golden/): its MIME processing finds every part with the
/// content type expected, and `cloud-init schema` accepts each #cloud-config part;
/// copies with a schema error, or a part cloud-init would ignore, fail.
#[test]
fn cloud_init_reads_the_nodeadm_user_data_and_refuses_broken_copies() {
    let script = repo().join("scripts/check-user-data.sh");
    let run = |files: &[PathBuf]| {
        Command::new("bash")
            .arg(&script)
            .args(files)
            .current_dir(repo())
            .output()
            .expect("running bash scripts/check-user-data.sh")
    };
    let out = run(&[]);
    assert!(
        out.status.success(),
        "the golden files fail:\n{}",
        text(&out)
    );
    assert!(text(&out).contains("cloud-config.mime: application/node.eks.aws, text/cloud-config"));

    let dir = std::env::temp_dir().join(format!("capstan-user-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let golden = "shared/reconcile/tests/golden/cloud-config.mime";
    for (name, from, to, caught_by) in [
        (
            "schema-error",
            "packages:\n  - jq\n",
            "packages: 3\n",
            "cloud-init schema",
        ),
        (
            "ignored-part",
            "Content-Type: text/cloud-config; charset=\"us-ascii\"",
            "Content-Type: text/plain; charset=\"us-ascii\"\n\nnot a script\n",
            "cloud-init would ignore a part",
        ),
    ] {
        let path = broken_copy_of(golden, &dir, name, from, to);
        let out = run(std::slice::from_ref(&path));
        let said = text(&out);
        assert!(!out.status.success(), "{name} passed:\n{said}");
        assert!(
            said.contains(caught_by),
            "{name}: expected {caught_by:?} in:\n{said}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
