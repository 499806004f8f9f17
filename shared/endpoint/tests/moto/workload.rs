//! The functions' way into workload clusters on AWS (`capstan_aws::AwsConnect` under
//! `capstan_kube::KubeWorkload`), over the wire: a kubeconfig held in moto's Secrets
//! Manager reaches the project's API-server fixture on loopback; an EKS cluster in
//! moto is described (never connected to: moto's endpoints are not on loopback).

use std::collections::BTreeMap;

use capstan_aws::AwsConnect;
use capstan_kube::fixture::ApiServer;
use capstan_kube::{Connect, KubeWorkload};
use capstan_runtime::ports::{ClusterAccessKey, Workload, WorkloadError, WorkloadTarget};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::support::Moto;

const INSTANCE: &str = "i-0123456789abcdef0";

fn kubeconfig(url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: demo
  cluster:
    server: {url}
users:
- name: capstan
  user:
    token: not-a-real-token
contexts:
- name: demo
  context:
    cluster: demo
    user: capstan
current-context: demo
"
    )
}

fn target(access: ClusterAccessKey) -> WorkloadTarget {
    WorkloadTarget {
        namespace: "default".into(),
        cluster: "demo".into(),
        access,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubeconfig_in_secrets_manager_reaches_the_workload_cluster() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let api = ApiServer::start().await.expect("the API-server fixture");
    api.handle().add_node(core::Node {
        metadata: ObjectMeta {
            name: Some("ip-10-0-0-4.ec2.internal".into()),
            labels: Some(BTreeMap::from([("role".into(), "worker".into())])),
            ..ObjectMeta::default()
        },
        spec: Some(core::NodeSpec {
            provider_id: Some(format!("aws:///us-east-1a/{INSTANCE}")),
            ..core::NodeSpec::default()
        }),
        ..core::Node::default()
    });
    let secret = clients
        .secrets
        .create_secret()
        .name("demo-kubeconfig")
        .secret_string(kubeconfig(&api.url()))
        .send()
        .await
        .expect("CreateSecret");
    let arn = secret.arn().expect("an ARN").to_string();

    let workload = KubeWorkload::new(AwsConnect::new(&clients));
    let node = workload
        .find_node(
            &target(ClusterAccessKey::Kubeconfig {
                secret_arn: arn.clone(),
            }),
            INSTANCE,
        )
        .await
        .expect("found through the secret's kubeconfig")
        .expect("the node");
    assert_eq!(node.name, "ip-10-0-0-4.ec2.internal");

    // A secret that does not exist is a refusal a person must fix, not "no node".
    let missing = arn.replace("demo-kubeconfig", "missing");
    let err = workload
        .find_node(
            &target(ClusterAccessKey::Kubeconfig {
                secret_arn: missing,
            }),
            INSTANCE,
        )
        .await
        .expect_err("no such secret");
    assert!(
        matches!(err, WorkloadError::Invalid(_) | WorkloadError::Forbidden(_)),
        "{err:?}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eks_cluster_is_described_and_its_certificate_authority_required() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let created = clients
        .eks
        .create_cluster()
        .name("demo")
        .role_arn("arn:aws:iam::123456789012:role/eks")
        .resources_vpc_config(
            aws_sdk_eks::types::VpcConfigRequest::builder()
                .subnet_ids("subnet-0a1b2c3d4e5f60001")
                .build(),
        )
        .send()
        .await
        .expect("CreateCluster");
    let endpoint = created
        .cluster()
        .and_then(|c| c.endpoint())
        .expect("moto gives the cluster an endpoint")
        .to_string();

    let connect = AwsConnect::new(&clients);
    // moto describes the cluster, but its certificate authority is a random string
    // (AWS gives base64 PEM): the adapter refuses to trust it, finally and saying why,
    // rather than connect without verifying the server. The token itself is tested
    // against aws-iam-authenticator's format in capstan-kube (eks_token).
    let err = connect
        .config(&target(ClusterAccessKey::Eks {
            cluster_name: "demo".into(),
            region: None,
        }))
        .await
        .expect_err("moto's certificate authority is not PEM");
    assert!(err.to_string().contains("certificate authority"), "{err}");
    assert!(!err.is_retryable());
    assert!(endpoint.starts_with("https://"), "{endpoint}");

    // What a node's bootstrap user data needs, from the same DescribeCluster: moto's
    // default service CIDR, and the authority as EKS gives it (base64, not decoded).
    let described = connect
        .eks_cluster(&target(ClusterAccessKey::Eks {
            cluster_name: "demo".into(),
            region: None,
        }))
        .await
        .expect("DescribeCluster for the bootstrap");
    assert_eq!(described.endpoint, endpoint);
    assert_eq!(described.service_cidr, "172.20.0.0/16");
    assert!(!described.certificate_authority.is_empty());
    // A kubeconfig target has no EKS cluster to describe: final.
    let err = connect
        .eks_cluster(&target(ClusterAccessKey::Kubeconfig {
            secret_arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:kc".into(),
        }))
        .await
        .expect_err("not EKS");
    assert!(!err.is_retryable(), "{err}");

    // A cluster EKS does not have: final, with the call named.
    let err = connect
        .config(&target(ClusterAccessKey::Eks {
            cluster_name: "nope".into(),
            region: None,
        }))
        .await
        .expect_err("no such cluster");
    assert!(err.to_string().contains("DescribeCluster"), "{err}");
    assert!(!err.is_retryable());
}
