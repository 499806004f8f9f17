//! Label, annotation and EC2 tag keys Capstan reads and writes. The tag keys are
//! the contract with IAM: infra/ conditions TerminateInstances on them.

/// Labels the control_plane put on the objects they create (Cluster API's, under capstan.dev/).
pub const CLUSTER_NAME: &str = "capstan.dev/cluster-name";
pub const POOL: &str = "capstan.dev/pool";
pub const ROLE: &str = "capstan.dev/role";
pub const DEPLOYMENT_NAME: &str = "capstan.dev/deployment-name";
pub const SET_NAME: &str = "capstan.dev/set-name";
/// On a MachineSet: the template hash it was made for (Cluster API's
/// `machine-template-hash`), so one set per hash can be checked whatever the names.
pub const TEMPLATE_HASH: &str = "capstan.dev/template-hash";

/// Annotation that makes a Machine the first to go when its MachineSet scales down.
pub const DELETE_MACHINE: &str = "capstan.dev/delete-machine";
/// Annotation that opts a Machine out of health-check remediation.
pub const SKIP_REMEDIATION: &str = "capstan.dev/skip-remediation";

/// Annotation that lets a Machine's instance be terminated without draining its Node
/// (Cluster API's `machine.cluster.x-k8s.io/exclude-node-draining`).
pub const EXCLUDE_NODE_DRAINING: &str = "capstan.dev/exclude-node-draining";
/// Annotation that lets a Machine's instance be terminated without waiting for its
/// Node's volumes to detach (Cluster API's
/// `machine.cluster.x-k8s.io/exclude-wait-for-node-volume-detach`).
pub const EXCLUDE_WAIT_FOR_VOLUME_DETACH: &str = "capstan.dev/exclude-wait-for-node-volume-detach";
/// Prefix of the annotations that hold a Machine's deletion before the drain, one per
/// owner (`pre-drain.delete.hook.capstan.dev/<owner>`), until the owner removes it
/// (Cluster API's `pre-drain.delete.hook.machine.cluster.x-k8s.io`).
pub const PRE_DRAIN_HOOK_PREFIX: &str = "pre-drain.delete.hook.capstan.dev/";
/// Prefix of the annotations that hold a Machine's deletion before its instance is
/// terminated (`pre-terminate.delete.hook.capstan.dev/<owner>`).
pub const PRE_TERMINATE_HOOK_PREFIX: &str = "pre-terminate.delete.hook.capstan.dev/";
/// Pod label that changes how a drain treats the pod (Cluster API's
/// `cluster.x-k8s.io/drain`): [`DRAIN_SKIP`] leaves it alone, [`DRAIN_WAIT_COMPLETED`]
/// waits for it to finish without evicting it.
pub const DRAIN_LABEL: &str = "capstan.dev/drain";
pub const DRAIN_SKIP: &str = "skip";
pub const DRAIN_WAIT_COMPLETED: &str = "wait-completed";

/// EC2 tags on every instance Capstan launches. Nothing without the installation tag
/// is ever terminated.
pub const TAG_INSTALLATION: &str = "capstan.dev/installation";
pub const TAG_NAMESPACE: &str = "capstan.dev/namespace";
pub const TAG_CLUSTER: &str = "capstan.dev/cluster";
pub const TAG_MACHINE: &str = "capstan.dev/machine";
pub const TAG_MACHINE_UID: &str = "capstan.dev/machine-uid";
/// Every instance of a batched launch carries the batch's ClientToken under this key
/// (instead of a machine and machine-uid tag: one RunInstances tags all its instances
/// alike); the Machine records the token and its instance's AmiLaunchIndex.
pub const TAG_LAUNCH_BATCH: &str = "capstan.dev/launch-batch";

/// Prefix reserved for Capstan's own tags and labels.
pub const RESERVED_PREFIX: &str = "capstan.dev/";

/// The annotations under [`RESERVED_PREFIX`] a worker pool may set for its Machines
/// (`spec.workers[].metadata.annotations`); every other `capstan.dev/` key there is
/// refused, since Capstan selects and tags by its own.
pub const POOL_ANNOTATIONS: [&str; 2] = [EXCLUDE_NODE_DRAINING, EXCLUDE_WAIT_FOR_VOLUME_DETACH];

/// The pool name of a cluster's control plane.
pub const CONTROL_PLANE_POOL: &str = "control-plane";

/// The annotations Cluster API's cluster-autoscaler provider reads on a
/// MachineDeployment to learn the bounds of its node group
/// (<https://github.com/kubernetes/autoscaler/tree/master/cluster-autoscaler/cloudprovider/clusterapi>).
pub const AUTOSCALER_MIN_SIZE: &str = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size";
pub const AUTOSCALER_MAX_SIZE: &str = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size";
