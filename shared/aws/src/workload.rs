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
use capstan_runtime::ports::{ClusterAccessKey, EksCluster, WorkloadError, WorkloadTarget};

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

    /// DescribeCluster, in the cluster's region (the function's own by default).
    async fn describe(
        &self,
        cluster_name: &str,
        region: &str,
    ) -> Result<aws_sdk_eks::types::Cluster, WorkloadError> {
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
        out.cluster.ok_or_else(|| {
            WorkloadError::Invalid(format!(
                "DescribeCluster returned no cluster {cluster_name}"
            ))
        })
    }

    /// The cluster's endpoint and certificate authority (base64, as EKS gives it).
    async fn endpoint_and_ca(
        &self,
        cluster_name: &str,
        region: &str,
    ) -> Result<(aws_sdk_eks::types::Cluster, String, String), WorkloadError> {
        let cluster = self.describe(cluster_name, region).await?;
        let endpoint = cluster.endpoint.clone().ok_or_else(|| {
            WorkloadError::Unavailable(format!(
                "EKS cluster {cluster_name} has no endpoint yet (status {:?})",
                cluster.status
            ))
        })?;
        let ca = cluster
            .certificate_authority
            .as_ref()
            .and_then(|c| c.data.clone())
            .ok_or_else(|| {
                WorkloadError::Invalid(format!(
                    "EKS cluster {cluster_name} reports no certificate authority"
                ))
            })?;
        Ok((cluster, endpoint, ca))
    }

    async fn eks_config(
        &self,
        target: &WorkloadTarget,
        cluster_name: &str,
        region: Option<&str>,
    ) -> Result<kube::Config, WorkloadError> {
        let region = region.unwrap_or(&self.region);
        let (_, endpoint, ca) = self.endpoint_and_ca(cluster_name, region).await?;
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

    async fn eks_cluster(&self, target: &WorkloadTarget) -> Result<EksCluster, WorkloadError> {
        let ClusterAccessKey::Eks {
            cluster_name,
            region,
        } = &target.access
        else {
            return Err(WorkloadError::Invalid(format!(
                "cluster {}/{} is reached through a kubeconfig: bootstrap.eks needs spec.access.eks",
                target.namespace, target.cluster
            )));
        };
        let region = region.as_deref().unwrap_or(&self.region);
        let (cluster, endpoint, certificate_authority) =
            self.endpoint_and_ca(cluster_name, region).await?;
        let network = cluster.kubernetes_network_config.as_ref();
        let service_cidr = network
            .and_then(|n| n.service_ipv4_cidr.clone())
            .or_else(|| network.and_then(|n| n.service_ipv6_cidr.clone()))
            .ok_or_else(|| {
                WorkloadError::Invalid(format!(
                    "EKS cluster {cluster_name} reports no service CIDR (kubernetesNetworkConfig)"
                ))
            })?;
        Ok(EksCluster {
            endpoint,
            certificate_authority,
            service_cidr,
        })
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
