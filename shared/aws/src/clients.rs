//! The SDK clients, built once per process from one `aws-config` load, with an
//! optional endpoint override (an AWS-compatible server such as moto_server).

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use capstan_runtime::routes::{DEAD_LETTER_QUEUE, WORK_QUEUE};

/// Where the clients point.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// An AWS-compatible endpoint for every service (`--endpoint URL`); None for AWS
    /// itself. `AWS_ENDPOINT_URL` in the environment is honoured by the SDK as well.
    pub endpoint: Option<String>,
    /// The region; None takes the SDK's usual chain (AWS_REGION, profile), or
    /// `us-east-1` when an endpoint is set and nothing else says.
    pub region: Option<String>,
    /// A named profile of the shared config and credentials files (`AWS_PROFILE` does
    /// the same); None takes the default credential chain.
    pub profile: Option<String>,
}

/// The names of the installation's resources. The SAM template and the local runtime
/// create them under these names; the functions read them from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// Tags every instance (`capstan.dev/installation`); only instances with it are terminated.
    pub installation: String,
    /// The one DynamoDB table.
    pub table: String,
    /// The custom event bus the stream router publishes to.
    pub bus: String,
    /// Rule and function names are this prefix followed by the reconciler's (or
    /// function's) name; the work queue is `<prefix>work`, the dead-letter queue
    /// `<prefix>dlq`.
    pub queue_prefix: String,
}

impl Default for Names {
    fn default() -> Self {
        Names::for_installation("capstan")
    }
}

impl Names {
    /// The names infra/template.yaml gives an installation: the table and the bus are
    /// named after it, its rules and functions `<installation>-<name>`, its queues
    /// `<installation>-work` and `<installation>-dlq`.
    pub fn for_installation(installation: &str) -> Names {
        Names {
            installation: installation.to_string(),
            table: installation.to_string(),
            bus: installation.to_string(),
            queue_prefix: format!("{installation}-"),
        }
    }

    /// From `CAPSTAN_INSTALLATION`, `CAPSTAN_TABLE`, `CAPSTAN_BUS` and
    /// `CAPSTAN_QUEUE_PREFIX` (the template sets all four), each missing one as
    /// [`Names::for_installation`] names it.
    pub fn from_env() -> Names {
        let var = |name: &str| std::env::var(name).ok();
        let d = Names::for_installation(
            &var("CAPSTAN_INSTALLATION").unwrap_or_else(|| "capstan".to_string()),
        );
        Names {
            table: var("CAPSTAN_TABLE").unwrap_or(d.table.clone()),
            bus: var("CAPSTAN_BUS").unwrap_or(d.bus.clone()),
            queue_prefix: var("CAPSTAN_QUEUE_PREFIX").unwrap_or(d.queue_prefix.clone()),
            ..d
        }
    }

    /// A reconciler's EventBridge rule: `<prefix><reconciler>`.
    pub fn rule(&self, reconciler_name: &str) -> String {
        format!("{}{reconciler_name}", self.queue_prefix)
    }

    /// A function of the installation: `<prefix><name>` (infra/template.yaml names
    /// every function so; the dispatcher invokes the reconcilers by these names).
    pub fn function(&self, name: &str) -> String {
        format!("{}{name}", self.queue_prefix)
    }

    /// The one work queue every reconciler's rule feeds: `<prefix>work`.
    pub fn work_queue(&self) -> String {
        format!("{}{WORK_QUEUE}", self.queue_prefix)
    }

    /// The one dead-letter queue: `<prefix>dlq`.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}{DEAD_LETTER_QUEUE}", self.queue_prefix)
    }
}

/// One client per service, sharing one configuration (credentials, region, endpoint).
#[derive(Clone, Debug)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub eventbridge: aws_sdk_eventbridge::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// For workload clusters: DescribeCluster, and kubeconfigs held as secrets.
    pub eks: aws_sdk_eks::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    /// The configuration every client was built from (credentials for EKS tokens).
    pub config: aws_config::SdkConfig,
    #[cfg(feature = "local")]
    pub streams: aws_sdk_dynamodbstreams::Client,
    /// The region the clients talk to.
    pub region: String,
}

impl Clients {
    /// Loads the configuration once and builds every client from it. Against an endpoint
    /// with no credentials configured, static placeholder credentials are used: a local
    /// server does not check them, and the SDK would otherwise probe IMDS for seconds.
    pub async fn load(settings: &Settings) -> Clients {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(20))
                .build(),
        );
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(endpoint) = &settings.endpoint {
            loader = loader.endpoint_url(endpoint);
            let configured = [
                "AWS_ACCESS_KEY_ID",
                "AWS_PROFILE",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
            ]
            .iter()
            .any(|v| std::env::var_os(v).is_some());
            if !configured {
                loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                    "testing",
                    "testing",
                    None,
                    None,
                    "capstan-local-endpoint",
                ));
            }
        }
        let region = settings.region.clone().or_else(|| {
            let from_env = std::env::var("AWS_REGION")
                .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
                .ok();
            from_env.or_else(|| settings.endpoint.as_ref().map(|_| "us-east-1".to_string()))
        });
        if let Some(region) = &region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let config = loader.load().await;
        let region = config
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".to_string());
        Clients {
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            ec2: aws_sdk_ec2::Client::new(&config),
            eventbridge: aws_sdk_eventbridge::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            eks: aws_sdk_eks::Client::new(&config),
            secrets: aws_sdk_secretsmanager::Client::new(&config),
            #[cfg(feature = "local")]
            streams: aws_sdk_dynamodbstreams::Client::new(&config),
            region,
            config,
        }
    }
}
