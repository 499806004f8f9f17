//! Issue 17: the autoscale pass's one EC2 read, `Compute::describe_instance_types`,
//! through `Ec2Compute` against moto. vCPUs and memory are EC2's; max pods is EKS's
//! ENI formula (`eni_max_pods`) over the type's network interfaces and addresses, the
//! numbers the EKS AMI's `eni-max-pods.txt` lists for these types.
//!
//! The adapter follows `NextToken`; moto answers DescribeInstanceTypes in one page
//! (it implements no `MaxResults`), so the paging loop itself is not exercised here.

use capstan_aws::Ec2Compute;
use capstan_runtime::ports::{Compute, ComputeError, InstanceCapacity};

use crate::support::Moto;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_instance_types_answers_vcpus_memory_and_eks_max_pods() {
    let moto = Moto::start();
    let ec2 = Ec2Compute::new(moto.clients().await.ec2.clone());

    let mut answered = ec2
        .describe_instance_types(vec![
            "m5.large".to_string(),
            "t3.medium".to_string(),
            "c5.xlarge".to_string(),
            // Asked twice: one row each.
            "m5.large".to_string(),
        ])
        .await
        .expect("describing known instance types");
    answered.sort_by(|a, b| a.0.cmp(&b.0));
    let capacity = |vcpus, memory_mib, max_pods| InstanceCapacity {
        vcpus,
        memory_mib,
        max_pods,
    };
    assert_eq!(
        answered,
        vec![
            ("c5.xlarge".to_string(), capacity(4, 8192, 58)),
            ("m5.large".to_string(), capacity(2, 8192, 29)),
            ("t3.medium".to_string(), capacity(2, 4096, 17)),
        ]
    );

    // Nothing asked, nothing called.
    assert_eq!(
        ec2.describe_instance_types(Vec::new()).await.unwrap(),
        vec![]
    );

    // A type EC2 does not know fails the whole call as Invalid (final, not retried):
    // the autoscale pass then asks type by type and leaves that one out.
    match ec2
        .describe_instance_types(vec!["m5.large".to_string(), "m5.huge".to_string()])
        .await
    {
        Err(ComputeError::Invalid { code, .. }) => assert_eq!(code, "InvalidInstanceType"),
        other => panic!("expected Invalid(InvalidInstanceType), got {other:?}"),
    }
}
