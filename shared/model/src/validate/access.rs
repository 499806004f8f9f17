//! A Cluster's `spec.access`: how Capstan's functions reach the workload cluster's API
//! server. Only where to find a credential is ever written here, never the credential.

use super::Errors;
use super::limits::MAX_EKS_CLUSTER_NAME_LEN;
use crate::kinds::ClusterAccess;

pub(super) fn access(v: &mut Errors, base: &str, access: &ClusterAccess) {
    match (&access.eks, &access.kubeconfig) {
        (None, None) => v.push(
            base,
            "names no way to reach the cluster",
            "set eks.clusterName (an EKS cluster) or kubeconfig.secretArn (any other control plane), or remove access for instance-only behaviour",
        ),
        (Some(_), Some(_)) => v.push(
            base,
            "sets both eks and kubeconfig",
            "keep one: eks for an EKS cluster (a token from the function's IAM role), kubeconfig for any other",
        ),
        _ => {}
    }
    if let Some(eks) = &access.eks {
        let path = format!("{base}.eks.clusterName");
        if eks.cluster_name.is_empty() {
            v.push(
                &path,
                "is required",
                "set the EKS cluster's name, as `aws eks list-clusters` shows it",
            );
        } else if !is_eks_cluster_name(&eks.cluster_name) {
            v.push(
                &path,
                format!("{:?} is not an EKS cluster name", eks.cluster_name),
                format!(
                    "EKS names are 1 to {MAX_EKS_CLUSTER_NAME_LEN} letters, digits, - and _, starting with a letter or digit: use the name `aws eks list-clusters` shows"
                ),
            );
        }
        if let Some(region) = &eks.region
            && !is_region(region)
        {
            v.push(
                format!("{base}.eks.region"),
                format!("{region:?} is not an AWS region"),
                "write a region code, e.g. us-east-1, or remove region for the installation's own",
            );
        }
    }
    if let Some(kubeconfig) = &access.kubeconfig
        && !is_secret_arn(&kubeconfig.secret_arn)
    {
        let found = if kubeconfig.secret_arn.is_empty() {
            "is required".to_string()
        } else {
            format!(
                "{:?} is not a Secrets Manager secret ARN",
                kubeconfig.secret_arn
            )
        };
        v.push(
            format!("{base}.kubeconfig.secretArn"),
            found,
            "store the kubeconfig in Secrets Manager and give its ARN, arn:aws:secretsmanager:<region>:<account>:secret:<name>, as `aws secretsmanager describe-secret --secret-id NAME --query ARN` prints it; list it in the installation's KubeconfigSecretArns parameter",
        );
    }
}

/// EKS's rule for cluster names: `^[0-9A-Za-z][A-Za-z0-9\-_]{0,99}$` (CreateCluster).
pub fn is_eks_cluster_name(name: &str) -> bool {
    name.len() <= MAX_EKS_CLUSTER_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `arn:<partition>:secretsmanager:<region>:<12-digit account>:secret:<name>`.
pub fn is_secret_arn(arn: &str) -> bool {
    let fields: Vec<&str> = arn.splitn(7, ':').collect();
    let [arn_, partition, service, region, account, resource, name] = fields[..] else {
        return false;
    };
    arn_ == "arn"
        && is_partition(partition)
        && service == "secretsmanager"
        && is_region(region)
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && resource == "secret"
        && !name.is_empty()
        && name.len() <= 512
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c))
}

/// `aws`, `aws-cn`, `aws-us-gov`, `aws-iso`, …
fn is_partition(p: &str) -> bool {
    p == "aws"
        || p.strip_prefix("aws-").is_some_and(|rest| {
            !rest.is_empty() && rest.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        })
}

/// A region code: lowercase words joined by `-`, ending in a number (`us-east-1`,
/// `us-gov-west-1`, `eu-central-2`).
fn is_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    let Some((last, words)) = parts.split_last() else {
        return false;
    };
    words.len() >= 2
        && words
            .iter()
            .all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase()))
        && !last.is_empty()
        && last.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert!(is_eks_cluster_name("a") && is_eks_cluster_name("My_cluster-1"));
        assert!(is_eks_cluster_name(&"a".repeat(100)));
        for bad in ["", "-a", "_a", "a.b", &"a".repeat(101)] {
            assert!(!is_eks_cluster_name(bad), "{bad}");
        }
        for good in [
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:capstan/demo-kubeconfig-AbCdEf",
            "arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:k",
        ] {
            assert!(is_secret_arn(good), "{good}");
        }
        for bad in [
            "",
            "capstan/demo-kubeconfig",
            "arn:aws:ssm:us-east-1:123456789012:parameter/k",
            "arn:aws:secretsmanager:us-east-1:1234:secret:k",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:",
            "arn:aws:secretsmanager::123456789012:secret:k",
            "arn:gcp:secretsmanager:us-east-1:123456789012:secret:k",
        ] {
            assert!(!is_secret_arn(bad), "{bad}");
        }
        assert!(is_region("us-east-1") && is_region("us-gov-west-1"));
        for bad in ["us-east", "US-east-1", "east-1", ""] {
            assert!(!is_region(bad), "{bad}");
        }
    }
}
