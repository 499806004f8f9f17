//! How the functions reach a workload cluster's API server on AWS (`capstan_kube::Connect`):
//! an EKS cluster through DescribeCluster (endpoint, certificate authority) and a
//! bearer token made from the function's own credentials (`capstan_kube::eks_token`);
//! a self-managed one through the kubeconfig held in Secrets Manager. Credentials are
//! made per connection and never logged or written anywhere.

use std::time::SystemTime;

use aws_config::Region;
use aws_credential_types::provider::ProvideCredentials;
use base64::Engine;
use capstan_kube::{Connect, StaticConnect, config_from_kubeconfig_yaml, eks_token};
use capstan_runtime::ports::{ClusterAccessKey, WorkloadError, WorkloadTarget};

use crate::clients::Clients;
use crate::error::{Class, classify};

/// The AWS way into workload clusters.
#[derive(Clone, Debug)]
pub struct AwsConnect {
    eks: aws_sdk_eks::Client,
    secrets: aws_sdk_secretsmanager::Client,
    config: aws_config::SdkConfig,
    region: String,
}

impl AwsConnect {
    pub fn new(clients: &Clients) -> AwsConnect {
        AwsConnect {
            eks: clients.eks.clone(),
            secrets: clients.secrets.clone(),
            config: clients.config.clone(),
            region: clients.region.clone(),
        }
    }

    async fn eks_config(
        &self,
        target: &WorkloadTarget,
        cluster_name: &str,
        region: Option<&str>,
    ) -> Result<kube::Config, WorkloadError> {
        let region = region.unwrap_or(&self.region);
        let eks = if region == self.region {
            self.eks.clone()
        } else {
            let conf = aws_sdk_eks::config::Builder::from(&self.config)
                .region(Region::new(region.to_string()))
                .build();
            aws_sdk_eks::Client::from_conf(conf)
        };
        let out = eks
            .describe_cluster()
            .name(cluster_name)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeCluster", &classify(&e)))?;
        let cluster = out.cluster.ok_or_else(|| {
            WorkloadError::Invalid(format!(
                "DescribeCluster returned no cluster {cluster_name}"
            ))
        })?;
        let endpoint = cluster.endpoint.ok_or_else(|| {
            WorkloadError::Unavailable(format!(
                "EKS cluster {cluster_name} has no endpoint yet (status {:?})",
                cluster.status
            ))
        })?;
        let ca = cluster
            .certificate_authority
            .and_then(|c| c.data)
            .ok_or_else(|| {
                WorkloadError::Invalid(format!(
                    "EKS cluster {cluster_name} reports no certificate authority"
                ))
            })?;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(ca.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                WorkloadError::Invalid(format!(
                    "EKS cluster {cluster_name}'s certificate authority is not base64 PEM"
                ))
            })?;
        let provider = self.config.credentials_provider().ok_or_else(|| {
            WorkloadError::Forbidden("no AWS credentials to make an EKS token with".into())
        })?;
        let credentials = provider.provide_credentials().await.map_err(|e| {
            WorkloadError::Forbidden(format!("cannot load AWS credentials for an EKS token: {e}"))
        })?;
        let token = eks_token::token(&credentials, region, cluster_name, SystemTime::now())
            .map_err(|e| WorkloadError::Forbidden(format!("cannot make an EKS token: {e}")))?;
        StaticConnect::new(&endpoint)?
            .with_token(token.token)
            .with_ca_pem(&pem)?
            .config(target)
            .await
    }

    async fn kubeconfig(&self, secret_arn: &str) -> Result<kube::Config, WorkloadError> {
        let out = self
            .secrets
            .get_secret_value()
            .secret_id(secret_arn)
            .send()
            .await
            .map_err(|e| sdk_error("GetSecretValue", &classify(&e)))?;
        let yaml = out.secret_string.ok_or_else(|| {
            WorkloadError::Invalid(format!(
                "secret {secret_arn} holds no string: store the kubeconfig as the secret's text"
            ))
        })?;
        config_from_kubeconfig_yaml(&yaml).await
    }
}

impl Connect for AwsConnect {
    async fn config(&self, target: &WorkloadTarget) -> Result<kube::Config, WorkloadError> {
        match &target.access {
            ClusterAccessKey::Eks {
                cluster_name,
                region,
            } => {
                self.eks_config(target, cluster_name, region.as_deref())
                    .await
            }
            ClusterAccessKey::Kubeconfig { secret_arn } => self.kubeconfig(secret_arn).await,
        }
    }
}

/// An AWS call's failure as the workload port's error.
fn sdk_error(call: &str, failure: &crate::error::Failure) -> WorkloadError {
    let what = format!("{call}: {} {}", failure.code, failure.message);
    match failure.class {
        Class::Throttled => WorkloadError::Throttled {
            retry_after: None,
            message: what,
        },
        Class::Transient => WorkloadError::Unavailable(what),
        Class::Service
            if failure.code.contains("AccessDenied")
                || failure.code.contains("UnauthorizedOperation")
                || failure.code == "UnrecognizedClientException" =>
        {
            WorkloadError::Forbidden(what)
        }
        Class::Service => WorkloadError::Invalid(what),
    }
}
