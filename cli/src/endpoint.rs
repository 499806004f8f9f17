//! `capstan run --endpoint URL` (or `--context NAME` of an endpoint context): the
//! endpoint runtime against an AWS-compatible endpoint (moto_server), over the same
//! SDK adapters and functions the Lambda binaries use.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use capstan_aws::provision::QueueOptions;
use capstan_aws::{Clients, Names, Settings};
use capstan_endpoint::{EndpointConfig, EndpointRuntime};

use crate::config::Context;

/// Where and under which names.
pub struct Target {
    pub endpoint: String,
    pub region: String,
    pub installation: String,
    pub table: String,
}

impl Target {
    /// The endpoint the global options or the context name.
    pub fn resolve(selector: &crate::target::Selector) -> anyhow::Result<Target> {
        let named = selector.resolve()?;
        match named.context {
            Context::Endpoint {
                url,
                installation,
                region,
            } => Ok(Target {
                endpoint: url,
                region: region.unwrap_or_else(|| "us-east-1".to_string()),
                table: selector
                    .table
                    .clone()
                    .unwrap_or_else(|| installation.clone()),
                installation,
            }),
            other => anyhow::bail!(
                "`capstan run` drives an AWS-compatible endpoint, and context {:?} is {}: pass --endpoint URL or --context of an endpoint context",
                named.name,
                other.describe()
            ),
        }
    }

    fn names(&self) -> Names {
        Names {
            table: self.table.clone(),
            ..Names::for_installation(&self.installation)
        }
    }

    async fn clients(&self) -> Clients {
        Clients::load(&Settings {
            endpoint: Some(self.endpoint.clone()),
            region: Some(self.region.clone()),
            profile: None,
        })
        .await
    }
}

pub struct RunOptions {
    pub sweep_every: Duration,
    pub visibility_timeout: Duration,
    /// Stop after this long; run until stopped when None.
    pub run_for: Option<Duration>,
}

pub async fn run(target: Target, options: RunOptions) -> anyhow::Result<ExitCode> {
    let clients = target.clients().await;
    let config = EndpointConfig {
        names: target.names(),
        queues: QueueOptions {
            visibility_timeout: options.visibility_timeout,
        },
        sweep_every: options.sweep_every,
        ..EndpointConfig::default()
    };
    let mut rt = EndpointRuntime::start(clients, config)
        .await
        .with_context(|| format!("starting the endpoint runtime against {}", target.endpoint))?;
    println!(
        "Capstan running against {} (installation {:?}, table {:?}).",
        target.endpoint, target.installation, target.table
    );
    println!(
        "Created if absent: the table with its stream, the bus \"capstan\", the work queue and its dead-letter queue, and per reconciler a rule wrapping its events into the work queue."
    );
    println!(
        "moto emits no EC2 state-change events: this runtime describes the installation's instances and relays their changes onto the default bus."
    );
    print_launchables(rt.clients()).await;
    println!(
        "Apply manifests from another terminal: capstan apply -f FILE --endpoint {} --installation {}",
        target.endpoint, target.installation
    );
    let started = Instant::now();
    loop {
        if let Some(limit) = options.run_for
            && started.elapsed() >= limit
        {
            return Ok(ExitCode::SUCCESS);
        }
        let worked = rt.step().await.context("running a round")?;
        if !worked {
            tokio::time::sleep(rt.config.idle_sleep).await;
        }
    }
}

/// What a MachineClass can launch from at this endpoint: moto generates its default
/// VPC's subnet ids at start, so a manifest for it must be written after looking, and
/// the Compute adapter reads the image's root device, so the image must exist.
async fn print_launchables(clients: &Clients) {
    let images = clients.ec2.describe_images().owners("amazon").send().await;
    let mut amazon_linux: Vec<String> = images
        .map(|out| {
            out.images()
                .iter()
                .filter(|i| i.root_device_name() == Some("/dev/xvda"))
                .filter(|i| i.name().is_some_and(|n| n.starts_with("amzn")))
                .filter_map(|i| i.image_id().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    amazon_linux.sort();
    if let Some(image) = amazon_linux.first() {
        println!("An Amazon Linux image here (use it as a MachineClass's imageId): {image}");
    }
    let subnets = clients.ec2.describe_subnets().send().await;
    let mut subnets: Vec<(String, String)> = subnets
        .map(|out| {
            out.subnets()
                .iter()
                .filter(|s| s.default_for_az() == Some(true))
                .filter_map(|s| {
                    Some((
                        s.availability_zone()?.to_string(),
                        s.subnet_id()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    subnets.sort();
    let groups = clients.ec2.describe_security_groups().send().await;
    let default_group = groups.ok().and_then(|out| {
        out.security_groups()
            .iter()
            .find(|g| g.group_name() == Some("default"))
            .and_then(|g| g.group_id().map(str::to_string))
    });
    if let Some(group) = default_group {
        println!("The default security group here (use it in securityGroups): {group}");
    }
    if !subnets.is_empty() {
        println!("Default-VPC subnets here (use them as a MachineClass's subnets):");
        for (zone, id) in subnets.iter().take(3) {
            println!("  - {id}   # {zone}");
        }
    }
}
