//! How to reach a workload cluster's API server: a [`kube::Config`] per target.
//! [`StaticConnect`] is for tests and local use; the AWS way in (EKS DescribeCluster
//! with an [`crate::eks_token`], or a kubeconfig from Secrets Manager through
//! [`config_from_kubeconfig_yaml`]) implements [`Connect`] in an AWS adapter crate.

use std::collections::HashMap;
use std::future::Future;

use capstan_runtime::ports::{EksCluster, WorkloadError, WorkloadTarget};
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use secrecy::SecretString;

/// Makes the client configuration for a target. Called again when a target's cached
/// client is refused with 401 (a token that expired), so an implementation should
/// make fresh credentials on each call.
pub trait Connect: Send + Sync {
    fn config(
        &self,
        target: &WorkloadTarget,
    ) -> impl Future<Output = Result<kube::Config, WorkloadError>> + Send;

    /// What a node needs to join the EKS cluster `target` names (DescribeCluster), for
    /// a launch with `bootstrap.eks`. A way in that knows of no EKS cluster says so.
    fn eks_cluster(
        &self,
        target: &WorkloadTarget,
    ) -> impl Future<Output = Result<EksCluster, WorkloadError>> + Send {
        let message = format!(
            "cluster {}/{} is reached without EKS: bootstrap.eks needs spec.access.eks and Capstan's AWS runtime",
            target.namespace, target.cluster
        );
        async move { Err(WorkloadError::Invalid(message)) }
    }
}

/// The same API server (or one per listed target) for every target, with an optional
/// bearer token and CA bundle.
#[derive(Clone, Default)]
pub struct StaticConnect {
    default_url: Option<http::Uri>,
    urls: HashMap<WorkloadTarget, http::Uri>,
    token: Option<String>,
    root_certs: Option<Vec<Vec<u8>>>,
    eks_cluster: Option<EksCluster>,
}

impl std::fmt::Debug for StaticConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticConnect")
            .field("default_url", &self.default_url)
            .field("urls", &self.urls)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl StaticConnect {
    /// Every target at `url` (`http://127.0.0.1:6443`, `https://…`).
    pub fn new(url: &str) -> Result<Self, WorkloadError> {
        Ok(StaticConnect {
            default_url: Some(parse_url(url)?),
            ..StaticConnect::default()
        })
    }

    /// No default: only targets added with [`StaticConnect::with_target`].
    pub fn per_target() -> Self {
        StaticConnect::default()
    }

    /// `target` at `url`.
    pub fn with_target(mut self, target: WorkloadTarget, url: &str) -> Result<Self, WorkloadError> {
        self.urls.insert(target, parse_url(url)?);
        Ok(self)
    }

    /// Sends `Authorization: Bearer <token>`.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Answers [`Connect::eks_cluster`] with `cluster` for every target.
    pub fn with_eks_cluster(mut self, cluster: EksCluster) -> Self {
        self.eks_cluster = Some(cluster);
        self
    }

    /// Trusts the certificates of a PEM bundle (instead of the system roots).
    pub fn with_ca_pem(mut self, pem: &str) -> Result<Self, WorkloadError> {
        self.root_certs = Some(ders_of_pem(pem.as_bytes())?);
        Ok(self)
    }
}

impl Connect for StaticConnect {
    async fn config(&self, target: &WorkloadTarget) -> Result<kube::Config, WorkloadError> {
        let url = self
            .urls
            .get(target)
            .or(self.default_url.as_ref())
            .ok_or_else(|| {
                WorkloadError::Forbidden(format!(
                    "no API server configured for cluster {}/{}",
                    target.namespace, target.cluster
                ))
            })?;
        let mut config = kube::Config::new(url.clone());
        config.root_cert.clone_from(&self.root_certs);
        config.auth_info.token = self.token.clone().map(SecretString::from);
        Ok(config)
    }

    async fn eks_cluster(&self, target: &WorkloadTarget) -> Result<EksCluster, WorkloadError> {
        self.eks_cluster.clone().ok_or_else(|| {
            WorkloadError::Invalid(format!(
                "no EKS cluster configured for cluster {}/{}",
                target.namespace, target.cluster
            ))
        })
    }
}

fn parse_url(url: &str) -> Result<http::Uri, WorkloadError> {
    url.parse::<http::Uri>()
        .ok()
        .filter(|u| u.scheme().is_some() && u.host().is_some())
        .ok_or_else(|| WorkloadError::Invalid(format!("not an API server URL: {url:?}")))
}

fn ders_of_pem(pem: &[u8]) -> Result<Vec<Vec<u8>>, WorkloadError> {
    let certs = pem::parse_many(pem)
        .map_err(|_| WorkloadError::Forbidden("the CA bundle is not PEM".into()))?;
    if certs.is_empty() {
        return Err(WorkloadError::Forbidden(
            "the CA bundle holds no certificate".into(),
        ));
    }
    Ok(certs.into_iter().map(pem::Pem::into_contents).collect())
}

/// The client configuration a kubeconfig (as Cluster API's `<cluster>-kubeconfig`
/// Secret holds it) gives for its current context. Errors name what is wrong, never
/// the file's content (it holds credentials); all are `Forbidden`, since a person must
/// fix the Secret. A user that authenticates with `exec` or an `auth-provider` is
/// refused: a Lambda function has no such program to run.
pub async fn config_from_kubeconfig_yaml(yaml: &str) -> Result<kube::Config, WorkloadError> {
    let forbidden = |m: &str| WorkloadError::Forbidden(format!("kubeconfig: {m}"));
    let kubeconfig = Kubeconfig::from_yaml(yaml)
        .map_err(|_| forbidden("not a YAML kubeconfig (apiVersion v1, kind Config)"))?;
    let context_name = kubeconfig
        .current_context
        .clone()
        .ok_or_else(|| forbidden("no current-context"))?;
    let user = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.user.clone());
    if let Some(user) = user {
        let auth = kubeconfig
            .auth_infos
            .iter()
            .find(|a| a.name == user)
            .and_then(|a| a.auth_info.as_ref());
        if auth.is_some_and(|a| a.exec.is_some() || a.auth_provider.is_some()) {
            return Err(forbidden(&format!(
                "user {user:?} authenticates with exec or an auth-provider; use a token or a client certificate"
            )));
        }
    }
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| forbidden(&kubeconfig_problem(&e)))
}

/// What is wrong with a kubeconfig, in our words: some of kube's messages quote the
/// data they could not decode.
fn kubeconfig_problem(e: &KubeconfigError) -> String {
    match e {
        KubeconfigError::CurrentContextNotSet => "no current-context".into(),
        KubeconfigError::LoadContext(name) => format!("no context named {name:?}"),
        KubeconfigError::LoadClusterOfContext(name) => {
            format!("the cluster of context {name:?} is missing")
        }
        KubeconfigError::MissingClusterUrl => "the cluster has no server URL".into(),
        KubeconfigError::ParseClusterUrl(_) => "the cluster's server URL does not parse".into(),
        KubeconfigError::LoadCertificateAuthority(_) | KubeconfigError::ParseCertificates(_) => {
            "certificate-authority-data does not decode to PEM certificates".into()
        }
        KubeconfigError::LoadClientCertificate(_) => {
            "client-certificate-data does not decode".into()
        }
        KubeconfigError::LoadClientKey(_) => "client-key-data does not decode".into(),
        KubeconfigError::Parse(_) => "not a YAML kubeconfig".into(),
        _ => "cannot be used (unsupported or inconsistent fields)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECONFIG: &str = r#"
apiVersion: v1
kind: Config
current-context: admin@prod
clusters:
- name: prod
  cluster:
    server: https://prod.example.test:6443
contexts:
- name: admin@prod
  context: {cluster: prod, user: admin}
users:
- name: admin
  user: {token: s3cr3t-token}
"#;

    #[tokio::test]
    async fn a_token_kubeconfig_gives_its_server_and_token() {
        let config = config_from_kubeconfig_yaml(KUBECONFIG)
            .await
            .expect("config");
        assert_eq!(
            config.cluster_url.to_string(),
            "https://prod.example.test:6443/"
        );
        assert!(config.auth_info.token.is_some());
    }

    #[tokio::test]
    async fn errors_name_the_problem_not_the_secret() {
        let exec = KUBECONFIG.replace(
            "user: {token: s3cr3t-token}",
            "user: {exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: aws, args: [s3cr3t-token]}}",
        );
        let no_context =
            KUBECONFIG.replace("current-context: admin@prod", "current-context: other");
        let bad_ca = KUBECONFIG.replace(
            "server: https://prod.example.test:6443",
            "server: https://prod.example.test:6443\n    certificate-authority-data: s3cr3t-token",
        );
        for (yaml, says) in [
            (exec.as_str(), "exec"),
            (no_context.as_str(), "no context"),
            (bad_ca.as_str(), "certificate-authority-data"),
            ("users: [s3cr3t-token", "not a YAML kubeconfig"),
        ] {
            let e = config_from_kubeconfig_yaml(yaml).await.expect_err(says);
            let text = e.to_string();
            assert!(text.contains(says), "{text}");
            assert!(!text.contains("s3cr3t"), "{text}");
            assert!(matches!(e, WorkloadError::Forbidden(_)));
        }
    }
}
