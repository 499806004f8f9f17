//! Manifests as people write them, through `read_manifests` only: every bad file must
//! be refused whole, with each error naming its document, line and field, quickly.

use std::time::{Duration, Instant};

use capstan_model::manifest::{MAX_DOCUMENTS, MAX_MANIFEST_BYTES};
use capstan_model::{
    DocumentError, FieldError, ManifestErrors, Object, read_manifests, to_json, to_yaml,
};

const QUICKSTART: &str = include_str!("../../../examples/quickstart.yaml");

/// The two MachineClasses of cluster `demo`, to go after a Cluster document.
const CLASSES: &str = "\
---
apiVersion: capstan.dev/v1alpha1
kind: MachineClass
metadata:
  name: demo-control-plane
spec:
  clusterName: demo
  imageId: ami-0abcdef1234567890
  instanceTypes: [m7i.large, m6i.large]
  subnets: [subnet-0a1b2c3d4e5f60001, subnet-0a1b2c3d4e5f60002]
---
apiVersion: capstan.dev/v1alpha1
kind: MachineClass
metadata:
  name: demo-workers
spec:
  clusterName: demo
  imageId: ami-0abcdef1234567890
  instanceTypes: [m7i.xlarge]
  subnets: [subnet-0a1b2c3d4e5f60001, subnet-0a1b2c3d4e5f60002]
";

const CLUSTER: &str = "\
apiVersion: capstan.dev/v1alpha1
kind: Cluster
metadata:
  name: demo
spec:
  version: v1.31.2
  controlPlane:
    machineClass: demo-control-plane
    replicas: 3
  workers:
    - name: workers
      machineClass: demo-workers
      replicas: 3
";

/// Reads `text`, which must fail, within the time guard.
fn refused(source: &str, text: &str) -> ManifestErrors {
    let started = Instant::now();
    let result = read_manifests(source, text);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "{source}: took {took:?}");
    match result {
        Ok(objects) => panic!("{source}: expected errors, read {} objects", objects.len()),
        Err(errors) => {
            println!("{errors}");
            assert!(errors.count() > 0);
            errors
        }
    }
}

/// The error at `path` (exactly), with its document.
fn at<'e>(errors: &'e ManifestErrors, path: &str) -> (&'e DocumentError, &'e FieldError) {
    errors
        .iter()
        .find(|(_, e)| e.path == path)
        .unwrap_or_else(|| panic!("no error at {path}; got:\n{errors}"))
}

fn assert_error(errors: &ManifestErrors, document: usize, path: &str, message: &str) -> FieldError {
    let (doc, e) = at(errors, path);
    assert_eq!(
        doc.document, document,
        "{path}: wrong document in\n{errors}"
    );
    assert!(
        e.message.contains(message),
        "{path}: message {:?} lacks {message:?}",
        e.message
    );
    assert!(!e.hint.is_empty(), "{path}: no hint");
    e.clone()
}

// ---- syntax --------------------------------------------------------------------

#[test]
fn bad_yaml_syntax_names_line_and_column_and_keeps_other_documents_errors() {
    let text = format!(
        "{CLUSTER}{}",
        CLASSES.replace(
            "instanceTypes: [m7i.xlarge]",
            "instanceTypes: [m7i.xlarge, m6i.xlarge"
        )
    );
    let errors = refused("cluster.yaml", &text);
    let (doc, e) = errors
        .iter()
        .find(|(_, e)| e.path.starts_with("line "))
        .expect("a syntax error");
    assert_eq!(doc.document, 3);
    assert_eq!(doc.line, 24, "the third document starts at its --- line");
    // The flow sequence runs on until the next line's "subnets:" cannot belong to it.
    assert_eq!(e.path, "line 33, column 10");
    assert!(e.hint.contains("unclosed ["), "{}", e.hint);
    assert_eq!(doc.kind.as_deref(), None, "the document did not parse");
    // The other documents were read and checked: none has an error, and the
    // reference to the unreadable document's class is not reported as missing.
    assert_eq!(errors.0.len(), 1, "{errors}");
}

#[test]
fn tab_indentation_is_refused_with_a_hint_about_spaces() {
    let text = "apiVersion: capstan.dev/v1alpha1\nkind: Cluster\nmetadata:\n\tname: demo\nspec:\n  version: v1.31.2\n";
    let errors = refused("tabs.yaml", text);
    let (doc, e) = at(&errors, "line 4, column 2");
    assert_eq!((doc.document, doc.line), (1, 1));
    assert!(e.message.contains("tab"), "{}", e.message);
    assert!(e.hint.contains("spaces"), "{}", e.hint);
}

#[test]
fn huge_integer_that_yaml_reads_as_a_float_is_too_large() {
    let text = CLUSTER.replace(
        "      replicas: 3",
        "      replicas: 99999999999999999999999",
    );
    let errors = refused("huge.yaml", &format!("{text}{CLASSES}"));
    let e = assert_error(&errors, 1, "spec.workers[0].replicas", "is too large");
    assert!(e.message.contains("from 0 to 1000"), "{}", e.message);
}

// ---- envelope ------------------------------------------------------------------

#[test]
fn wrong_api_version_is_named() {
    let text = CLUSTER.replace("capstan.dev/v1alpha1", "cluster.x-k8s.io/v1beta1");
    let errors = refused("capi.yaml", &format!("{text}{CLASSES}"));
    let e = assert_error(&errors, 1, "apiVersion", "unsupported apiVersion");
    assert!(e.hint.contains("capstan.dev/v1alpha1"));
}

#[test]
fn unknown_kind_lists_the_kinds() {
    let text = "\
apiVersion: capstan.dev/v1alpha1
kind: MachinePool
metadata:
  name: pool-a
spec:
  clusterName: demo
  replicas: 2
";
    let errors = refused("pool.yaml", text);
    let e = assert_error(&errors, 1, "kind", "unknown kind \"MachinePool\"");
    assert!(e.hint.contains("MachineDeployment"));
}

#[test]
fn missing_kind_is_required() {
    let text = "\
apiVersion: capstan.dev/v1alpha1
metadata:
  name: web
spec:
  clusterName: demo
  replicas: 2
";
    let errors = refused("nokind.yaml", text);
    assert_error(&errors, 1, "kind", "is required");
}

#[test]
fn unknown_field_typo_suggests_the_field() {
    let text = format!(
        "{CLUSTER}{CLASSES}---\n{}",
        "\
apiVersion: capstan.dev/v1alpha1
kind: MachineDeployment
metadata:
  name: demo-extra
spec:
  clusterName: demo
  replica: 3
  template:
    spec:
      version: v1.31.2
      machineClass: demo-workers
"
    );
    let errors = refused("typo.yaml", &text);
    let e = assert_error(&errors, 4, "spec.replica", "unknown field \"replica\"");
    assert!(e.hint.contains("\"replicas\""), "{}", e.hint);
    let (doc, _) = at(&errors, "spec.replica");
    assert_eq!(doc.line, 34);
    assert_eq!(doc.kind.as_deref(), Some("MachineDeployment"));
    assert_eq!(doc.name.as_deref(), Some("demo-extra"));
}

#[test]
fn unknown_nested_field_has_its_full_path() {
    let text = CLUSTER.replace(
        "      machineClass: demo-workers",
        "      machineclass: demo-workers",
    );
    let errors = refused("nested.yaml", &format!("{text}{CLASSES}"));
    let e = assert_error(&errors, 1, "spec.workers[0].machineclass", "unknown field");
    assert!(e.hint.contains("machineClass"), "{}", e.hint);
}

// ---- numbers -------------------------------------------------------------------

const DEPLOYMENT: &str = "\
---
apiVersion: capstan.dev/v1alpha1
kind: MachineDeployment
metadata:
  name: web
  namespace: default
spec:
  clusterName: demo
  replicas: REPLICAS
  template:
    spec:
      version: v1.31.2
      machineClass: demo-workers
";

fn deployment_with(replicas: &str) -> String {
    format!(
        "{CLUSTER}{CLASSES}{}",
        DEPLOYMENT.replace("REPLICAS", replicas)
    )
}

#[test]
fn negative_replicas_must_be_zero_or_more() {
    let errors = refused("examples/bad.yaml", &deployment_with("-1"));
    assert_error(&errors, 4, "spec.replicas", "must be 0 or more, found -1");
    let line = errors.to_string();
    assert_eq!(
        line,
        "examples/bad.yaml: document 4 (line 34) MachineDeployment default/web: spec.replicas: must be 0 or more, found -1 (set a count of 0 or more)"
    );
}

#[test]
fn deletion_timeouts_must_be_zero_or_more_and_at_most_thirty_days() {
    let text = deployment_with("2").replace(
        "      machineClass: demo-workers\n",
        "      machineClass: demo-workers\n      deletion:\n        nodeDrainTimeoutSeconds: -5\n        nodeDeletionTimeoutSeconds: 99999999\n",
    );
    let errors = refused("timeouts.yaml", &text);
    assert_error(
        &errors,
        4,
        "spec.template.spec.deletion.nodeDrainTimeoutSeconds",
        "must be 0 or more, found -5",
    );
    assert_error(
        &errors,
        4,
        "spec.template.spec.deletion.nodeDeletionTimeoutSeconds",
        "more than 2592000 (30 days)",
    );
}

#[test]
fn pool_deletion_timeouts_need_access_to_the_cluster() {
    let text = format!("{CLUSTER}{CLASSES}").replace(
        "      replicas: 3\n",
        "      replicas: 3\n      deletion: {nodeDrainTimeoutSeconds: 600}\n",
    );
    let errors = refused("pool.yaml", &text);
    assert_error(
        &errors,
        1,
        "spec.workers[0].deletion",
        "declares no spec.access",
    );
}

#[test]
fn replicas_as_a_word_asks_for_digits() {
    let errors = refused("word.yaml", &deployment_with("three"));
    let e = assert_error(&errors, 4, "spec.replicas", "found the string \"three\"");
    assert!(
        e.message.contains("a whole number from 0 to 1000"),
        "{}",
        e.message
    );
}

#[test]
fn replicas_beyond_i32_is_too_large() {
    let errors = refused("big.yaml", &deployment_with("99999999999"));
    let e = assert_error(&errors, 4, "spec.replicas", "99999999999 is too large");
    assert_eq!(
        e.message,
        "99999999999 is too large: expected a whole number from 0 to 1000"
    );
}

#[test]
fn replicas_beyond_float_range_names_the_field() {
    let errors = refused("inf.yaml", &deployment_with("1e400"));
    let e = assert_error(&errors, 4, "spec.replicas", "1e400 is too large");
    assert!(e.message.contains("from 0 to 1000"), "{}", e.message);
    let (doc, _) = at(&errors, "spec.replicas");
    assert_eq!(
        (doc.kind.as_deref(), doc.name.as_deref()),
        (Some("MachineDeployment"), Some("web"))
    );
    let errors = refused("inf.yaml", &deployment_with(".inf"));
    assert_error(&errors, 4, "spec.replicas", ".inf is too large");
}

#[test]
fn replicas_over_the_limit_is_refused() {
    let errors = refused("many.yaml", &deployment_with("5000"));
    assert_error(&errors, 4, "spec.replicas", "5000 is too large");
}

#[test]
fn even_control_plane_replicas_break_quorum() {
    let text = CLUSTER.replace("    replicas: 3\n  workers", "    replicas: 2\n  workers");
    let errors = refused("even.yaml", &format!("{text}{CLASSES}"));
    let e = assert_error(
        &errors,
        1,
        "spec.controlPlane.replicas",
        "must be 1, 3, 5 or 7, found 2",
    );
    assert!(e.hint.contains("quorum"));
}

// ---- references and duplicates ---------------------------------------------------

#[test]
fn worker_pool_naming_a_missing_machine_class() {
    let text = CLUSTER.replace("machineClass: demo-workers", "machineClass: demo-worker");
    let errors = refused("ref.yaml", &format!("{text}{CLASSES}"));
    let e = assert_error(
        &errors,
        1,
        "spec.workers[0].machineClass",
        "MachineClass \"demo-worker\" not found in namespace \"default\"",
    );
    assert!(
        e.hint.starts_with("did you mean \"demo-workers\"?"),
        "{}",
        e.hint
    );
}

#[test]
fn machine_class_of_another_cluster_is_refused() {
    let classes = CLASSES.replacen("clusterName: demo\n", "clusterName: other\n", 1);
    let errors = refused("other.yaml", &format!("{CLUSTER}{classes}"));
    assert_error(
        &errors,
        1,
        "spec.controlPlane.machineClass",
        "belongs to cluster \"other\"",
    );
    assert_error(
        &errors,
        2,
        "spec.clusterName",
        "Cluster \"other\" not found",
    );
}

#[test]
fn duplicate_names_point_at_the_earlier_document() {
    let text = format!(
        "{CLUSTER}{CLASSES}{}",
        CLASSES.replace("demo-control-plane", "demo-cp")
    );
    let errors = refused("dup.yaml", &text);
    let (doc, e) = at(&errors, "metadata.name");
    assert_eq!(doc.document, 5);
    assert!(
        e.message
            .contains("duplicate MachineClass default/demo-workers: document 3 defines it too"),
        "{}",
        e.message
    );
    assert_eq!(errors.count(), 1, "{errors}");
}

#[test]
fn duplicate_pool_names() {
    let text = CLUSTER.to_string()
        + "    - name: workers\n      machineClass: demo-workers\n      replicas: 1\n";
    let errors = refused("pools.yaml", &format!("{text}{CLASSES}"));
    let e = assert_error(
        &errors,
        1,
        "spec.workers[1].name",
        "duplicate pool name \"workers\"",
    );
    assert!(e.message.contains("spec.workers[0]"));
}

#[test]
fn missing_cluster_name() {
    let classes = CLASSES.replacen("  clusterName: demo\n", "", 1);
    let errors = refused("nocluster.yaml", &format!("{CLUSTER}{classes}"));
    assert_error(&errors, 2, "spec.clusterName", "is required");
    assert_eq!(
        errors.count(),
        1,
        "no cascade onto the Cluster's reference:\n{errors}"
    );
}

// ---- Cluster access and EKS bootstrap ------------------------------------------

/// The Cluster, reached as EKS cluster `eks-demo`.
fn eks_cluster() -> String {
    CLUSTER.to_string() + "  access:\n    eks:\n      clusterName: eks-demo\n"
}

/// The classes, the workers' with `bootstrap: {eks: {}}` and `user_data` (indented
/// under a block scalar when given).
fn eks_classes(user_data: Option<&str>) -> String {
    let mut classes = CLASSES.to_string() + "  bootstrap:\n    eks: {}\n";
    if let Some(data) = user_data {
        classes.push_str("  userData: |\n");
        for line in data.lines() {
            classes.push_str(&format!("    {line}\n"));
        }
    }
    classes
}

#[test]
fn eks_bootstrap_with_eks_access_and_a_script_reads() {
    let text = format!(
        "{}{}",
        eks_cluster(),
        eks_classes(Some("#!/bin/bash\necho joined"))
    );
    let objects = read_manifests("eks.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
    let Object::MachineClass(class) = &objects[2] else {
        panic!("the workers' class third");
    };
    assert!(
        class
            .spec
            .bootstrap
            .as_ref()
            .is_some_and(|b| b.eks.is_some())
    );
    let again = read_manifests("again", &to_yaml(&objects)).expect("round trip");
    assert_eq!(again, objects);
}

#[test]
fn eks_bootstrap_needs_the_clusters_eks_access() {
    let errors = refused("noaccess.yaml", &format!("{CLUSTER}{}", eks_classes(None)));
    let e = assert_error(
        &errors,
        3,
        "spec.bootstrap.eks",
        "Cluster \"demo\" has no spec.access.eks",
    );
    assert!(e.hint.contains("spec.access.eks.clusterName"), "{}", e.hint);

    let kubeconfig = CLUSTER.to_string()
        + "  access:\n    kubeconfig:\n      secretArn: arn:aws:secretsmanager:us-east-1:123456789012:secret:demo-kubeconfig\n";
    let errors = refused(
        "kubeconfig.yaml",
        &format!("{kubeconfig}{}", eks_classes(None)),
    );
    assert_error(
        &errors,
        3,
        "spec.bootstrap.eks",
        "is reached through a kubeconfig",
    );
}

#[test]
fn eks_bootstrap_refuses_mime_and_unrecognised_user_data() {
    let mime = "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b--";
    let errors = refused(
        "mime.yaml",
        &format!("{}{}", eks_cluster(), eks_classes(Some(mime))),
    );
    let e = assert_error(&errors, 3, "spec.userData", "is a MIME multi-part document");
    assert!(e.hint.contains("#cloud-config"), "{}", e.hint);

    let errors = refused(
        "plain.yaml",
        &format!("{}{}", eks_cluster(), eks_classes(Some("echo hello"))),
    );
    assert_error(&errors, 3, "spec.userData", "cloud-init would ignore it");

    let big = format!("#!/bin/sh\n{}", "#".repeat(13_000));
    let errors = refused(
        "big.yaml",
        &format!("{}{}", eks_cluster(), eks_classes(Some(&big))),
    );
    assert_error(
        &errors,
        3,
        "spec.userData",
        "with bootstrap.eks at most 12288",
    );
}

#[test]
fn bootstrap_must_name_a_method() {
    let classes = CLASSES.to_string() + "  bootstrap: {}\n";
    let errors = refused("empty.yaml", &format!("{}{classes}", eks_cluster()));
    assert_error(&errors, 3, "spec.bootstrap", "names no bootstrap method");
}

#[test]
fn cluster_access_rules() {
    let with_access = |access: &str| format!("{CLUSTER}  access:\n{access}{CLASSES}");
    let errors = refused("none.yaml", &format!("{CLUSTER}  access: {{}}\n{CLASSES}"));
    assert_error(
        &errors,
        1,
        "spec.access",
        "names no way to reach the cluster",
    );

    let errors = refused(
        "both.yaml",
        &with_access(
            "    eks:\n      clusterName: demo\n    kubeconfig:\n      secretArn: arn:aws:secretsmanager:us-east-1:123456789012:secret:k\n",
        ),
    );
    assert_error(&errors, 1, "spec.access", "sets both eks and kubeconfig");

    let errors = refused(
        "name.yaml",
        &with_access("    eks:\n      clusterName: my.cluster\n      region: Virginia\n"),
    );
    let e = assert_error(
        &errors,
        1,
        "spec.access.eks.clusterName",
        "\"my.cluster\" is not an EKS cluster name",
    );
    assert!(e.hint.contains("letters, digits, - and _"), "{}", e.hint);
    assert_error(&errors, 1, "spec.access.eks.region", "is not an AWS region");

    let errors = refused(
        "arn.yaml",
        &with_access("    kubeconfig:\n      secretArn: demo-kubeconfig\n"),
    );
    let e = assert_error(
        &errors,
        1,
        "spec.access.kubeconfig.secretArn",
        "\"demo-kubeconfig\" is not a Secrets Manager secret ARN",
    );
    assert!(e.hint.contains("KubeconfigSecretArns"), "{}", e.hint);

    let errors = refused("empty-arn.yaml", &with_access("    kubeconfig: {}\n"));
    assert_error(
        &errors,
        1,
        "spec.access.kubeconfig.secretArn",
        "is required",
    );
}

// ---- MachineClass --------------------------------------------------------------

#[test]
fn empty_subnets() {
    let classes = CLASSES.replacen(
        "subnets: [subnet-0a1b2c3d4e5f60001, subnet-0a1b2c3d4e5f60002]",
        "subnets: []",
        1,
    );
    let errors = refused("subnets.yaml", &format!("{CLUSTER}{classes}"));
    assert_error(&errors, 2, "spec.subnets", "must name at least one subnet");
}

#[test]
fn malformed_ami_id() {
    let classes = CLASSES.replacen("ami-0abcdef1234567890", "ami-12345", 1);
    let errors = refused("ami.yaml", &format!("{CLUSTER}{classes}"));
    let e = assert_error(&errors, 2, "spec.imageId", "\"ami-12345\" is not an AMI id");
    assert!(e.hint.contains("8 or 17 hexadecimal"));
}

#[test]
fn secret_in_user_data_is_refused_without_repeating_it() {
    let classes = CLASSES.to_string()
        + "  userData: |\n    #!/bin/bash\n    export DB_PASSWORD=hunter2\n    curl -fsSL https://example.com/setup.sh | bash\n";
    let errors = refused("secret.yaml", &format!("{CLUSTER}{classes}"));
    let e = assert_error(
        &errors,
        3,
        "spec.userData",
        "line 2 sets DB_PASSWORD to a literal value",
    );
    assert!(e.hint.contains("Secrets Manager"));
    assert!(!errors.to_string().contains("hunter2"));
}

#[test]
fn access_key_and_private_key_in_user_data() {
    let classes = CLASSES.to_string()
        + "  userData: |\n    aws configure set aws_access_key_id AKIAIOSFODNN7EXAMPLE\n    cat > /root/.ssh/id_rsa <<EOF\n    -----BEGIN RSA PRIVATE KEY-----\n    EOF\n    password: ${DB_PASSWORD}\n";
    let errors = refused("keys.yaml", &format!("{CLUSTER}{classes}"));
    let messages: Vec<&str> = errors.iter().map(|(_, e)| e.message.as_str()).collect();
    assert!(
        messages.contains(&"line 1 contains an AWS access key id"),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"line 3 begins a private key"),
        "{messages:?}"
    );
    assert_eq!(
        messages.len(),
        2,
        "a variable reference is not a secret: {messages:?}"
    );
}

#[test]
fn reserved_tag_prefix() {
    let classes = CLASSES.to_string() + "  tags:\n    capstan.dev/cluster: demo\n    team: web\n";
    let errors = refused("tags.yaml", &format!("{CLUSTER}{classes}"));
    assert_error(
        &errors,
        3,
        "spec.tags[\"capstan.dev/cluster\"]",
        "uses the reserved prefix capstan.dev/",
    );
}

// ---- MachineDeployment ---------------------------------------------------------

#[test]
fn max_surge_and_max_unavailable_both_zero() {
    let text = deployment_with("3")
        + "  rollout:\n    strategy:\n      type: RollingUpdate\n      rollingUpdate:\n        maxSurge: 0\n        maxUnavailable: \"0%\"\n";
    let errors = refused("rollout.yaml", &text);
    assert_error(
        &errors,
        4,
        "spec.rollout.strategy.rollingUpdate.maxUnavailable",
        "may not be 0 when maxSurge is 0",
    );
}

// ---- names ---------------------------------------------------------------------

#[test]
fn name_with_uppercase_suggests_a_valid_one() {
    let text = deployment_with("3").replace("name: web", "name: Web_Frontend");
    let errors = refused("upper.yaml", &text);
    let e = assert_error(&errors, 4, "metadata.name", "uppercase letter 'W'");
    assert!(e.hint.contains("\"web-frontend\""), "{}", e.hint);
}

#[test]
fn cluster_name_too_long_for_derived_names() {
    let text = format!("{CLUSTER}{CLASSES}").replace("demo", "production-analytics-eu");
    let errors = refused("long.yaml", &text);
    let e = assert_error(
        &errors,
        1,
        "metadata.name",
        "is 23 characters long, more than 20",
    );
    assert!(e.hint.contains("63"), "{}", e.hint);
    // The MachineClasses' clusterName is too long for a cluster name as well.
    assert_error(
        &errors,
        2,
        "spec.clusterName",
        "more than a Cluster name may be (20)",
    );
}

#[test]
fn pool_named_control_plane_is_reserved() {
    let text = CLUSTER.replace("- name: workers", "- name: control-plane");
    let errors = refused("reserved.yaml", &format!("{text}{CLASSES}"));
    assert_error(
        &errors,
        1,
        "spec.workers[0].name",
        "is reserved for the control plane",
    );
}

// ---- many errors at once ---------------------------------------------------------

#[test]
fn several_errors_in_one_document_are_all_reported() {
    let text = "\
apiVersion: capstan.dev/v1alpha1
kind: MachineClass
metadata:
  name: Bad_Class
spec:
  clusterName: demo
  imageId: ami-xyz
  instanceTypes: [m7i.large, m7i.large, large]
  subnets: [subnet-0a1b2c3d4e5f60001, subnet-1]
  securityGroups: [sg-zz]
  rootVolume: {sizeGiB: 4, type: io2}
  market: {type: OnDemand, spotMaxPrice: \"-1\"}
  metadataOptions: {httpPutResponseHopLimit: 0}
";
    let errors = refused("many.yaml", text);
    for path in [
        "metadata.name",
        "spec.imageId",
        "spec.instanceTypes[1]",
        "spec.instanceTypes[2]",
        "spec.subnets[1]",
        "spec.securityGroups[0]",
        "spec.rootVolume.sizeGiB",
        "spec.rootVolume.iops",
        "spec.market.spotMaxPrice",
        "spec.metadataOptions.httpPutResponseHopLimit",
    ] {
        at(&errors, path);
    }
    assert_eq!(errors.0.len(), 1, "one document");
}

#[test]
fn errors_across_documents_are_all_reported() {
    let text = format!(
        "{}{}{}",
        CLUSTER.replace("v1.31.2", "v1.31"),
        CLASSES
            .replacen("ami-0abcdef1234567890", "ami-bad", 1)
            .replace("instanceTypes: [m7i.xlarge]", "instanceTypes: [m7i.xlarge"),
        DEPLOYMENT.replace("REPLICAS", "-2")
    );
    let errors = refused("all.yaml", &text);
    assert_error(&errors, 1, "spec.version", "not a version");
    assert_error(&errors, 2, "spec.imageId", "not an AMI id");
    assert!(
        errors
            .0
            .iter()
            .any(|d| d.document == 3 && d.errors[0].path.starts_with("line "))
    );
    assert_error(&errors, 4, "spec.replicas", "must be 0 or more");
    let documents: Vec<usize> = errors.0.iter().map(|d| d.document).collect();
    assert_eq!(documents, [1, 2, 3, 4]);
}

// ---- bounds --------------------------------------------------------------------

#[test]
fn billion_laughs_is_refused() {
    let mut text = String::from(
        "apiVersion: capstan.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: lol\n  labels:\n    a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    let names = ["b", "c", "d", "e", "f", "g", "h", "i"];
    let mut previous = "a";
    for name in names {
        let refs = vec![format!("*{previous}"); 9].join(", ");
        text.push_str(&format!("    {name}: &{name} [{refs}]\n"));
        previous = name;
    }
    let errors = refused("lol.yaml", &text);
    let (_, e) = errors.iter().next().expect("an error");
    assert!(e.path.starts_with("line "), "{}", e.path);
    assert!(e.message.contains("aliases"), "{}", e.message);
    assert!(e.hint.contains("alias bombs"), "{}", e.hint);
}

#[test]
fn ten_thousand_deep_nesting_is_refused() {
    let text = format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Cluster\nmetadata: {{name: deep}}\nspec: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let errors = refused("deep.yaml", &text);
    let (_, e) = errors.iter().next().expect("an error");
    assert!(
        e.message.contains("nested more than 32 levels"),
        "{}",
        e.message
    );
}

#[test]
fn five_mib_file_is_refused_before_parsing() {
    let filler = format!("# {}\n", "x".repeat(1022));
    let text = format!("{CLUSTER}{}", filler.repeat(5 * 1024));
    assert!(text.len() > MAX_MANIFEST_BYTES);
    let errors = refused("big.yaml", &text);
    let (doc, e) = errors.iter().next().expect("an error");
    assert_eq!(doc.document, 0);
    assert!(
        e.message.contains("more than the limit of 4194304 bytes"),
        "{}",
        e.message
    );
}

#[test]
fn hundred_thousand_documents_are_refused() {
    let text = "---\nkind: Cluster\n".repeat(100_000);
    let errors = refused("stream.yaml", &text);
    let (_, e) = errors.iter().next().expect("an error");
    assert_eq!(
        e.message,
        format!("has 100000 documents, more than the limit of {MAX_DOCUMENTS}")
    );
}

#[test]
fn a_long_stream_of_small_errors_stays_fast() {
    let text = DEPLOYMENT.replace("REPLICAS", "-1").repeat(MAX_DOCUMENTS);
    let errors = refused("stream.yaml", &text);
    assert!(errors.count() >= MAX_DOCUMENTS);
}

// ---- good paths ----------------------------------------------------------------

#[test]
fn quickstart_reads_with_no_errors() {
    let started = Instant::now();
    let objects = read_manifests("examples/quickstart.yaml", QUICKSTART)
        .unwrap_or_else(|e| panic!("quickstart:\n{e}"));
    assert!(started.elapsed() < Duration::from_secs(2));
    let kinds: Vec<String> = objects.iter().map(|o| o.kind().to_string()).collect();
    assert_eq!(kinds, ["Cluster", "MachineClass", "MachineClass"]);
    let Object::Cluster(cluster) = &objects[0] else {
        panic!("a Cluster first");
    };
    assert_eq!(cluster.metadata.namespace, "default");
    assert_eq!(cluster.spec.version, "v1.31.2");
    let Object::MachineClass(class) = &objects[1] else {
        panic!("then a MachineClass");
    };
    assert_eq!(class.spec.tags["cost-center"], "1234");
    assert!(
        class
            .spec
            .user_data
            .as_deref()
            .is_some_and(|u| u.starts_with("#cloud-config\n"))
    );
}

#[test]
fn yaml_round_trips() {
    let objects = read_manifests("q", QUICKSTART).expect("quickstart");
    let yaml = to_yaml(&objects);
    assert_eq!(yaml.matches("\n---\n").count(), 2, "{yaml}");
    let again = read_manifests("again", &yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(again, objects);
}

#[test]
fn tricky_strings_round_trip_quoted() {
    let text = format!(
        "{CLUSTER}{}",
        CLASSES.to_string()
            + "  tags:\n    a: \"yes\"\n    b: \"1e3\"\n    c: \"0x10\"\n    d: \"~\"\n    e: \"017\"\n    f: \"true\"\n    g: \"\"\n    h: \"- x\"\n"
    );
    let objects = read_manifests("t", &text).unwrap_or_else(|e| panic!("{e}"));
    let again = read_manifests("again", &to_yaml(&objects)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, objects);
}

#[test]
fn json_and_lists_read_like_yaml() {
    let objects = read_manifests("q", QUICKSTART).expect("quickstart");
    let json = to_json(&objects);
    assert!(json.trim_start().starts_with('['));
    assert_eq!(
        read_manifests("q.json", &json).expect("json array"),
        objects
    );
    let list = format!("{{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": {json}}}");
    assert_eq!(read_manifests("list.json", &list).expect("list"), objects);
    let one = to_json(&objects[..1]);
    assert!(one.trim_start().starts_with('{'));
}

#[test]
fn list_item_errors_name_the_item() {
    let objects = read_manifests("q", QUICKSTART).expect("quickstart");
    let json = to_json(&objects).replace("\"replicas\": 3", "\"replicas\": 4");
    let list = format!("kind: List\nitems: {json}\n");
    let errors = refused("list.yaml", &list);
    assert_error(&errors, 1, "items[0].spec.controlPlane.replicas", "found 4");
}

#[test]
fn status_and_system_metadata_are_dropped() {
    let text = CLUSTER.replace(
        "  name: demo\n",
        "  name: demo\n  uid: 6f1c\n  generation: 7\n  resourceVersion: \"12\"\n  finalizers: [capstan.dev/finalizer]\n",
    ) + "status:\n  phase: Provisioned\n  observedGeneration: 7\n";
    let objects =
        read_manifests("s", &format!("{text}{CLASSES}")).unwrap_or_else(|e| panic!("{e}"));
    let Object::Cluster(cluster) = &objects[0] else {
        panic!("a Cluster");
    };
    assert_eq!(cluster.metadata.uid, None);
    assert_eq!(cluster.metadata.generation, None);
    assert_eq!(cluster.metadata.resource_version, None);
    assert!(cluster.metadata.finalizers.is_empty());
    assert_eq!(cluster.status, Default::default());
}

#[test]
fn empty_and_comment_only_documents_are_skipped() {
    let text = format!("# leading comment\n---\n---\n# nothing\n...\n{CLUSTER}{CLASSES}---\n");
    let objects = read_manifests("e", &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(objects.len(), 3);
    assert!(read_manifests("empty", "").expect("empty").is_empty());
}

#[test]
fn several_files_are_checked_as_one_set() {
    let classes = CLASSES.trim_start_matches("---\n");
    let objects = capstan_model::manifest::read_sources(&[
        ("cluster.yaml", CLUSTER),
        ("classes.yaml", classes),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(objects.len(), 3);

    let errors = capstan_model::manifest::read_sources(&[
        ("cluster.yaml".to_string(), format!("{CLUSTER}{CLASSES}")),
        ("copy.yaml".to_string(), classes.to_string()),
        ("big.yaml".to_string(), "#".repeat(MAX_MANIFEST_BYTES + 1)),
    ])
    .expect_err("duplicates and a file too large");
    println!("{errors}");
    let sources: Vec<(&str, usize)> = errors
        .0
        .iter()
        .map(|d| (d.source.as_str(), d.document))
        .collect();
    assert_eq!(
        sources,
        [("copy.yaml", 1), ("copy.yaml", 2), ("big.yaml", 0)]
    );
    assert!(
        errors.0[0].errors[0]
            .message
            .ends_with("cluster.yaml document 2 defines it too"),
        "{errors}"
    );
}

#[test]
fn pathological_values_stay_fast() {
    // A 900 KB user data line of assignments, a 500 KB unknown key, a 500 KB class name.
    let user_data = "password = x ".repeat(70_000);
    let classes = CLASSES.to_string() + &format!("  userData: \"{user_data}\"\n");
    let key = "k".repeat(500_000);
    let cluster = CLUSTER.replace("spec:\n", &format!("spec:\n  {key}: 1\n"));
    refused("slow.yaml", &format!("{cluster}{classes}"));
    let name = "c".repeat(500_000);
    let cluster = CLUSTER.replace(
        "machineClass: demo-workers",
        &format!("machineClass: {name}"),
    );
    refused("slow.yaml", &format!("{cluster}{CLASSES}"));
}

#[test]
fn wrongly_typed_values_do_not_hide_the_documents_other_errors() {
    let text = "apiVersion: capstan.dev/v1alpha1
kind: Cluster
metadata: {name: Demo}
spec:
  version: 1.31
  controlPlane: {machineClass: x, replicas: 2}
  workers:
  - {name: a, machineClass: y, replicas: -1, replica: 2}
  - {name: b, machineClass: y, replicas: many}
";
    let errors = capstan_model::manifest::read_manifests("typed.yaml", text).expect_err("invalid");
    let paths: Vec<String> = errors.iter().map(|(_, e)| e.path.clone()).collect();
    for expected in [
        "spec.version",
        "spec.workers[0].replica",
        "spec.workers[1].replicas",
        "metadata.name",
        "spec.controlPlane.replicas",
        "spec.workers[0].replicas",
    ] {
        assert!(
            paths.iter().any(|p| p == expected),
            "{expected} missing from {paths:?}"
        );
    }
    assert_eq!(
        paths.iter().filter(|p| *p == "spec.version").count(),
        1,
        "no second error for a field already reported: {paths:?}"
    );
}

/// Kubernetes workload objects beside Capstan's: refused with the fix by `apply`'s
/// reader, kept as they are by `capstan up`'s, and never hiding a missing reference.
#[test]
fn kubernetes_workload_objects_are_refused_or_kept() {
    let deployment =
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 2}\n";
    let text = format!(
        "{}\n---\n{deployment}",
        include_str!("../../../examples/quickstart.yaml")
    );
    let refused = capstan_model::manifest::read_manifests("both.yaml", &text)
        .expect_err("apply refuses a Deployment");
    let said = refused.to_string();
    assert!(
        said.contains("Deployment is a Kubernetes object, not one of Capstan's"),
        "{said}"
    );
    assert!(
        said.contains("apply it to the workload cluster with kubectl"),
        "{said}"
    );

    let kept = capstan_model::manifest::read_with_workload(&[("both.yaml", text.as_str())])
        .expect("up keeps it");
    assert_eq!(kept.objects.len(), 3);
    assert_eq!(kept.workload.len(), 1);
    assert_eq!(kept.workload[0]["metadata"]["name"], "web");

    // A Cluster naming a class that is not there is still an error beside them.
    let dangling = format!(
        "{}\n---\n{deployment}",
        "apiVersion: capstan.dev/v1alpha1\nkind: Cluster\nmetadata: {name: demo}\nspec:\n  version: v1.31.2\n  controlPlane: {machineClass: nowhere, replicas: 1}\n"
    );
    let e = capstan_model::manifest::read_with_workload(&[("d.yaml", dangling.as_str())])
        .expect_err("the class is missing");
    assert!(e.to_string().contains("nowhere"), "{e}");
}

/// A pool's `capstan.dev/` labels and annotations are Capstan's, refused with the
/// path; the drain opt-outs are the pool's to set.
#[test]
fn a_pool_sets_only_the_drain_opt_outs_under_capstan_dev() {
    let with_pool_metadata = |metadata: &str| {
        include_str!("../../../examples/quickstart.yaml").replace(
            "    - name: workers        # at most 15 characters; \"control-plane\" is reserved\n",
            &format!("    - name: workers\n      metadata: {metadata}\n"),
        )
    };
    let ok =
        with_pool_metadata("{annotations: {capstan.dev/exclude-node-draining: \"\", team: web}}");
    capstan_model::manifest::read_manifests("ok.yaml", &ok).expect("the opt-out is allowed");
    let bad = with_pool_metadata(
        "{labels: {capstan.dev/pool: other}, annotations: {capstan.dev/delete-machine: \"\"}}",
    );
    let e = capstan_model::manifest::read_manifests("bad.yaml", &bad)
        .expect_err("reserved keys are refused")
        .to_string();
    assert!(
        e.contains("spec.workers[0].metadata.labels.capstan.dev/pool"),
        "{e}"
    );
    assert!(
        e.contains("spec.workers[0].metadata.annotations.capstan.dev/delete-machine"),
        "{e}"
    );
    assert!(e.contains("capstan.dev/exclude-node-draining"), "{e}");
}

// ---- a MachineSet's Machines -----------------------------------------------------

/// The demo Cluster, its classes, and a Machine written with MachineSet `web` as its
/// controller, named `name` (the fourth document).
fn machine_of_set(name: &str) -> String {
    format!(
        "{CLUSTER}{CLASSES}---
apiVersion: capstan.dev/v1alpha1
kind: Machine
metadata:
  name: {name}
  ownerReferences:
    - kind: MachineSet
      name: web
      controller: true
spec:
  clusterName: demo
  role: Worker
  version: v1.31.2
  machineClass: demo-workers
  failureDomain: subnet-0a1b2c3d4e5f60001
  launch:
    imageId: ami-0abcdef1234567890
    instanceTypes: [m7i.large]
"
    )
}

#[test]
fn a_machine_controlled_by_a_set_must_carry_the_sets_name_prefix() {
    let errors = refused("examples/machine.yaml", &machine_of_set("hand-made"));
    let e = assert_error(
        &errors,
        4,
        "metadata.name",
        "is controlled by MachineSet \"web\", so its name must start with \"web-\"",
    );
    assert!(e.hint.contains("web-<suffix>"), "{}", e.hint);
    let objects = read_manifests("examples/machine.yaml", &machine_of_set("web-h4nd1"))
        .unwrap_or_else(|e| panic!("a Machine named after its set is accepted:\n{e}"));
    assert_eq!(objects.len(), 4);
}
