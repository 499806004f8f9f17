//! The Compute port on EC2.
//!
//! Contract, on top of the port's:
//! - **RunInstances** is one call per launch (MinCount = MaxCount = 1) with
//!   `ClientToken` = the Machine's uid and TagSpecifications for the instance and its
//!   volumes, so an instance is never untagged, not even for a moment. The root
//!   volume's device name comes from the image (DescribeImages, cached per image for
//!   the life of the process: an AMI's root device never changes).
//! - **TerminateInstances** is sent only after DescribeInstances (by id) shows every
//!   instance carrying the guard tag; otherwise nothing is terminated and the call
//!   fails with `Invalid { code: "UnauthorizedOperation" }`, as the tag-conditioned
//!   IAM policy would answer in AWS. The check and the IAM condition guard each other.
//! - **DescribeInstances** filters by tag and follows pages of 1000. It is for the
//!   drift sweep and crash recovery only.
//! - Errors are classified by code: throttling → `Throttled`; capacity and limits →
//!   `Unfulfillable` (another type or subnet may work); other 4xx → `Invalid` (final);
//!   5xx and transport failures → `Unavailable` (the call may have happened).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::operation::describe_instances::builders::DescribeInstancesFluentBuilder;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, IamInstanceProfileSpecification,
    InstanceInterruptionBehavior, InstanceMarketOptionsRequest, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceMetadataTagsState, InstanceType, MarketType,
    ResourceType, SpotInstanceType, SpotMarketOptions, Tag, TagSpecification, VolumeType,
};
use capstan_model::kinds::{HttpTokens, MarketType as CapstanMarket};
use capstan_model::labels::RESERVED_PREFIX;
use capstan_model::{InstanceState, Timestamp};
use capstan_runtime::ports::{
    Compute, ComputeError, Instance, InstanceCapacity, LaunchRequest, eni_max_pods,
};

use crate::error::{Class, classify};

/// Codes that mean "this offering cannot be had now; another type or subnet may work".
const UNFULFILLABLE: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientCapacityOnOutpost",
    "InsufficientFreeAddressesInSubnet",
    "MaxSpotInstanceCountExceeded",
    "SpotMaxPriceTooLow",
    "VcpuLimitExceeded",
    "InstanceLimitExceeded",
    "Unsupported",
];

/// EC2, through the SDK.
#[derive(Clone, Debug)]
pub struct Ec2Compute {
    client: Client,
    /// Image id → root device name ("/dev/xvda", "/dev/sda1").
    root_devices: Arc<Mutex<HashMap<String, String>>>,
}

impl Ec2Compute {
    pub fn new(client: Client) -> Ec2Compute {
        Ec2Compute {
            client,
            root_devices: Arc::default(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The image's root device name, which the root volume's block device mapping must
    /// name for its size, type and encryption to apply (CAPA does the same lookup).
    async fn root_device(&self, image_id: &str) -> Result<String, ComputeError> {
        if let Some(known) = self.cached_root_device(image_id) {
            return Ok(known);
        }
        let out = self
            .client
            .describe_images()
            .image_ids(image_id)
            .send()
            .await
            .map_err(compute_error)?;
        let device = out
            .images()
            .iter()
            .find(|i| i.image_id() == Some(image_id))
            .and_then(|i| i.root_device_name())
            .map(str::to_string)
            .ok_or_else(|| ComputeError::Invalid {
                code: "InvalidAMIID.NotFound".to_string(),
                message: format!("The image id '[{image_id}]' does not exist"),
            })?;
        if let Ok(mut cache) = self.root_devices.lock() {
            cache.insert(image_id.to_string(), device.clone());
        }
        Ok(device)
    }

    fn cached_root_device(&self, image_id: &str) -> Option<String> {
        self.root_devices.lock().ok()?.get(image_id).cloned()
    }

    /// One RunInstances for one launch.
    ///
    /// Expected flow: the Machine's observed item already says `Provisioning`; this call
    /// launches with the Machine's uid as ClientToken and every Capstan tag applied at
    /// launch; the caller records the returned id. Guarantees: the instance is tagged
    /// from its first moment (TagSpecifications), so a crash before the id is recorded
    /// leaves an instance that recovery finds by its `machine-uid` tag. Assumptions:
    /// EC2 honours ClientToken for a retry after a timeout (AWS does; moto does not,
    /// which is why recovery looks by tag first). Errors: see the module docs.
    async fn launch(&self, request: LaunchRequest) -> Result<Instance, ComputeError> {
        let instances = self.launch_up_to(request, 1).await?;
        instances
            .into_iter()
            .next()
            .ok_or_else(|| ComputeError::Unavailable("RunInstances returned no instance".into()))
    }

    /// One RunInstances for up to `count` identical instances (MinCount = 1, MaxCount =
    /// `count`): [`Self::launch`]'s request, every instance tagged alike; each reports
    /// its AmiLaunchIndex, by which the caller assigns them (`capstan_reconcile::
    /// launch_batch`).
    async fn launch_up_to(
        &self,
        request: LaunchRequest,
        count: u32,
    ) -> Result<Vec<Instance>, ComputeError> {
        let max_count = i32::try_from(count).map_err(|_| ComputeError::Invalid {
            code: "InvalidParameterValue".into(),
            message: format!("MaxCount {count} is too large"),
        })?;
        let root_device = self.root_device(&request.image_id).await?;
        let volume = &request.root_volume;
        let ebs = EbsBlockDevice::builder()
            .volume_size(volume.size_gib)
            .volume_type(VolumeType::from(
                serde_json::to_value(volume.volume_type)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| "gp3".to_string())
                    .as_str(),
            ))
            .encrypted(volume.encrypted)
            .set_kms_key_id(volume.kms_key_id.clone())
            .set_iops(volume.iops)
            .delete_on_termination(true)
            .build();
        let tags: Vec<Tag> = request
            .tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let tag_spec = |resource: ResourceType| {
            TagSpecification::builder()
                .resource_type(resource)
                .set_tags(Some(tags.clone()))
                .build()
        };
        let metadata = &request.metadata_options;
        let metadata_options = InstanceMetadataOptionsRequest::builder()
            .http_endpoint(InstanceMetadataEndpointState::Enabled)
            .http_tokens(match metadata.http_tokens {
                HttpTokens::Required => HttpTokensState::Required,
                HttpTokens::Optional => HttpTokensState::Optional,
            })
            .http_put_response_hop_limit(metadata.http_put_response_hop_limit)
            .instance_metadata_tags(if metadata.instance_metadata_tags {
                InstanceMetadataTagsState::Enabled
            } else {
                InstanceMetadataTagsState::Disabled
            })
            .build();
        let mut call = self
            .client
            .run_instances()
            // No token is no token, not an empty one: the SDK then makes up a fresh
            // one per call (ClientToken is an idempotency token), so EC2 launches anew.
            .set_client_token(
                (!request.client_token.is_empty()).then(|| request.client_token.clone()),
            )
            .image_id(&request.image_id)
            .instance_type(InstanceType::from(request.instance_type.as_str()))
            .min_count(1)
            .max_count(max_count)
            .subnet_id(&request.subnet_id)
            .set_security_group_ids(
                (!request.security_groups.is_empty()).then(|| request.security_groups.clone()),
            )
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(root_device)
                    .ebs(ebs)
                    .build(),
            )
            .metadata_options(metadata_options);
        // Every resource the launch creates carries the tags, so an IAM policy
        // conditioned on `aws:RequestTag` (infra/template.yaml) lets it through. No
        // tags, no specifications: EC2 refuses an empty one.
        if !tags.is_empty() {
            call = call
                .tag_specifications(tag_spec(ResourceType::Instance))
                .tag_specifications(tag_spec(ResourceType::Volume))
                .tag_specifications(tag_spec(ResourceType::NetworkInterface));
        }
        if let Some(profile) = &request.instance_profile {
            call = call.iam_instance_profile(
                IamInstanceProfileSpecification::builder()
                    .name(profile)
                    .build(),
            );
        }
        if request.market.market_type == CapstanMarket::Spot {
            if !tags.is_empty() {
                call = call.tag_specifications(tag_spec(ResourceType::SpotInstancesRequest));
            }
            call = call.instance_market_options(
                InstanceMarketOptionsRequest::builder()
                    .market_type(MarketType::Spot)
                    .spot_options(
                        SpotMarketOptions::builder()
                            .set_max_price(request.market.spot_max_price.clone())
                            .spot_instance_type(SpotInstanceType::OneTime)
                            .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate)
                            .build(),
                    )
                    .build(),
            );
        }
        if let Some(user_data) = &request.user_data {
            call = call.user_data(aws_smithy_types::base64::encode(user_data.as_bytes()));
        }
        let out = call.send().await.map_err(compute_error)?;
        Ok(out.instances().iter().map(instance_of).collect())
    }

    /// Refuses unless every one of `ids` exists and carries `tag_guard` (IAM enforces the
    /// same in AWS; this keeps the promise where IAM is not there, as against moto).
    async fn guard(
        &self,
        ids: &[String],
        (key, value): &(String, String),
        verb: &str,
    ) -> Result<(), ComputeError> {
        let described = self.describe_ids(ids).await?;
        for id in ids {
            let Some(instance) = described.iter().find(|i| &i.instance_id == id) else {
                return Err(ComputeError::Invalid {
                    code: "InvalidInstanceID.NotFound".to_string(),
                    message: format!("The instance ID '{id}' does not exist"),
                });
            };
            if instance.tags.get(key) != Some(value) {
                return Err(ComputeError::Invalid {
                    code: "UnauthorizedOperation".to_string(),
                    message: format!(
                        "refusing to {verb} {id}: it does not carry the tag {key}={value}"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Every instance among `ids` as EC2 describes it now.
    async fn describe_ids(&self, ids: &[String]) -> Result<Vec<Instance>, ComputeError> {
        self.describe_pages(|| {
            self.client
                .describe_instances()
                .set_instance_ids(Some(ids.to_vec()))
        })
        .await
    }

    /// Every page of one DescribeInstances request, `request` building it afresh per page.
    async fn describe_pages(
        &self,
        request: impl Fn() -> DescribeInstancesFluentBuilder,
    ) -> Result<Vec<Instance>, ComputeError> {
        let mut found = Vec::new();
        let mut token = None;
        loop {
            let out = request()
                .set_next_token(token)
                .send()
                .await
                .map_err(compute_error)?;
            found.extend(
                out.reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .map(instance_of),
            );
            match out.next_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(found),
            }
        }
    }
}

fn compute_error<E>(err: SdkError<E, HttpResponse>) -> ComputeError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let failure = classify(&err);
    match failure.class {
        Class::Throttled => ComputeError::Throttled { code: failure.code },
        Class::Transient => ComputeError::Unavailable(failure.to_string()),
        Class::Service if UNFULFILLABLE.contains(&failure.code.as_str()) => {
            ComputeError::Unfulfillable {
                code: failure.code,
                message: failure.message,
            }
        }
        Class::Service => ComputeError::Invalid {
            code: failure.code,
            message: failure.message,
        },
    }
}

/// The port's view of an SDK instance.
fn instance_of(i: &aws_sdk_ec2::types::Instance) -> Instance {
    let state = i
        .state()
        .and_then(|s| s.name())
        .and_then(|n| InstanceState::parse(n.as_str()))
        // An unknown state name is treated as still alive: never released on a guess.
        .unwrap_or(InstanceState::Pending);
    Instance {
        instance_id: i.instance_id().unwrap_or_default().to_string(),
        state,
        instance_type: i
            .instance_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        subnet_id: i.subnet_id().unwrap_or_default().to_string(),
        availability_zone: i
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or_default()
            .to_string(),
        private_ip: i.private_ip_address().map(str::to_string),
        tags: i
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
            .collect::<BTreeMap<_, _>>(),
        // An instance without a launch time is never old enough to be collected as a leak.
        launch_time: i
            .launch_time()
            .and_then(|t| Timestamp::new(t.secs(), t.subsec_nanos() as i32).ok())
            .unwrap_or(Timestamp::MAX),
        // EC2 reports the token (empty for a launch without one); moto leaves it out.
        client_token: i.client_token().map(str::to_string),
        launch_index: i.ami_launch_index().and_then(|n| u32::try_from(n).ok()),
    }
}

impl Compute for Ec2Compute {
    async fn run_instances(
        &self,
        launches: Vec<LaunchRequest>,
    ) -> Vec<Result<Instance, ComputeError>> {
        let mut results = Vec::with_capacity(launches.len());
        for request in launches {
            results.push(self.launch(request).await);
        }
        results
    }

    async fn run_batch(
        &self,
        launch: LaunchRequest,
        count: u32,
    ) -> Result<Vec<Instance>, ComputeError> {
        self.launch_up_to(launch, count).await
    }

    /// Terminates `instance_ids`, but only if every one carries `tag_guard`.
    ///
    /// Expected flow: DescribeInstances by id, check the guard tag on each, then one
    /// TerminateInstances for all. Guarantees: an instance without the guard tag is never
    /// sent to TerminateInstances, nor is anything else in the same call. Errors: an id
    /// EC2 does not know is `Invalid { code: "InvalidInstanceID.NotFound" }` (the caller
    /// treats it as terminated); a missing guard is `Invalid { code: "UnauthorizedOperation" }`.
    async fn terminate_instances(
        &self,
        instance_ids: Vec<String>,
        tag_guard: (String, String),
    ) -> Result<Vec<(String, InstanceState)>, ComputeError> {
        let mut ids = instance_ids;
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.guard(&ids, &tag_guard, "terminate").await?;
        let out = self
            .client
            .terminate_instances()
            .set_instance_ids(Some(ids))
            .send()
            .await
            .map_err(compute_error)?;
        Ok(out
            .terminating_instances()
            .iter()
            .filter_map(|change| {
                let id = change.instance_id()?.to_string();
                let state = change
                    .current_state()
                    .and_then(|s| s.name())
                    .and_then(|n| InstanceState::parse(n.as_str()))
                    .unwrap_or(InstanceState::ShuttingDown);
                Some((id, state))
            })
            .collect())
    }

    /// CreateTags on instances of this installation only (the template allows it only
    /// with `aws:ResourceTag` set to the installation, and never for a `capstan.dev/`
    /// key, the guard's included). Such a key is refused before anything is sent, as
    /// IAM refuses the request before EC2 looks at the instances.
    async fn create_tags(
        &self,
        instance_ids: Vec<String>,
        tags: BTreeMap<String, String>,
        tag_guard: (String, String),
    ) -> Result<(), ComputeError> {
        let mut ids = instance_ids;
        ids.sort();
        ids.dedup();
        if ids.is_empty() || tags.is_empty() {
            return Ok(());
        }
        // The template's IAM allows CreateTags only without `capstan.dev/` keys
        // (`aws:TagKeys`), the guard among them: an instance's identity is set at launch.
        if let Some(key) = tags
            .keys()
            .find(|k| **k == tag_guard.0 || k.starts_with(RESERVED_PREFIX))
        {
            return Err(ComputeError::Invalid {
                code: "UnauthorizedOperation".to_string(),
                message: format!(
                    "refusing to set the tag {key}: Capstan's tags are set at launch only"
                ),
            });
        }
        self.guard(&ids, &tag_guard, "tag").await?;
        self.client
            .create_tags()
            .set_resources(Some(ids))
            .set_tags(Some(
                tags.iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect(),
            ))
            .send()
            .await
            .map_err(compute_error)?;
        Ok(())
    }

    async fn describe_instances(
        &self,
        tags: Vec<(String, String)>,
    ) -> Result<Vec<Instance>, ComputeError> {
        let filters: Vec<Filter> = tags
            .iter()
            .map(|(k, v)| Filter::builder().name(format!("tag:{k}")).values(v).build())
            .collect();
        self.describe_pages(|| {
            self.client
                .describe_instances()
                .set_filters(Some(filters.clone()))
                .max_results(1000)
        })
        .await
    }

    /// DescribeInstanceTypes for the named types, following pages. A type whose answer
    /// lacks its vCPUs, memory or network figures is left out rather than guessed.
    async fn describe_instance_types(
        &self,
        instance_types: Vec<String>,
    ) -> Result<Vec<(String, InstanceCapacity)>, ComputeError> {
        let mut names = instance_types;
        names.sort();
        names.dedup();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(names.len());
        let mut next: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_instance_types()
                .set_instance_types(Some(
                    names
                        .iter()
                        .map(|t| aws_sdk_ec2::types::InstanceType::from(t.as_str()))
                        .collect(),
                ))
                .set_next_token(next.take())
                .send()
                .await
                .map_err(compute_error)?;
            for info in page.instance_types() {
                let capacity = (|| {
                    let name = info.instance_type()?.as_str().to_string();
                    let vcpus = u32::try_from(info.v_cpu_info()?.default_v_cpus()?).ok()?;
                    let memory_mib = u64::try_from(info.memory_info()?.size_in_mib()?).ok()?;
                    let network = info.network_info()?;
                    let enis = u32::try_from(network.maximum_network_interfaces()?).ok()?;
                    let ips = u32::try_from(network.ipv4_addresses_per_interface()?).ok()?;
                    Some((
                        name,
                        InstanceCapacity {
                            vcpus,
                            memory_mib,
                            max_pods: eni_max_pods(enis, ips),
                        },
                    ))
                })();
                out.extend(capacity);
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }
}
