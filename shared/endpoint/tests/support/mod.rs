//! What the moto tests share: a moto_server of their own on a free loopback port, the
//! AMI, subnets and security group moto really has (validation is on, so invented ones
//! fail as on AWS), manifests built from them, and bounded runs of the local runtime.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capstan_aws::provision::QueueOptions;
use capstan_aws::{Clients, DynamoStore, Ec2Compute, Names, Settings};
use capstan_endpoint::{EndpointConfig, EndpointOutcome, EndpointRuntime, Observation};
use capstan_model::labels::{
    TAG_CLUSTER, TAG_INSTALLATION, TAG_MACHINE, TAG_MACHINE_UID, TAG_NAMESPACE,
};
use capstan_model::{Kind, LaunchRequest, Object, ObjectKey, Timestamp};
use capstan_runtime::apply;
use capstan_runtime::ports::{Clock, Compute};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A tool from PATH, else from the project's venv (scripts/install-tools.sh).
pub fn tool(name: &str) -> PathBuf {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let venv = repo().join(".tools/venv/bin").join(name);
    assert!(
        venv.is_file(),
        "{name} not found on PATH nor in .tools/venv: run `bash scripts/install-tools.sh` (scripts/test.sh does)"
    );
    venv
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    listener.local_addr().expect("local address").port()
}

/// A moto_server on 127.0.0.1 only, stopped when dropped.
pub struct Moto {
    child: Child,
    pub endpoint: String,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("capstan-moto-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("moto log file");
        let child = Command::new(tool("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ENABLE_AMI_VALIDATION", "1")
            .env("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("starting moto_server");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto_server did not listen on 127.0.0.1:{port} within 60 s (log: {})",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
        }
    }

    pub async fn clients(&self) -> Clients {
        Clients::load(&Settings {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".to_string()),
            profile: None,
        })
        .await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What moto's EC2 really has, for building manifests that pass its validation.
#[derive(Clone, Debug)]
pub struct Ec2Env {
    pub image_id: String,
    pub subnets: Vec<String>,
    /// Each subnet's availability zone, in the order of `subnets`.
    pub zones: Vec<String>,
    pub security_group: String,
}

/// An instance type moto offers (its instance type validation is on).
pub const INSTANCE_TYPE: &str = "t3.micro";

impl Ec2Env {
    pub async fn discover(clients: &Clients) -> Ec2Env {
        let images = clients
            .ec2
            .describe_images()
            .owners("amazon")
            .send()
            .await
            .expect("DescribeImages");
        let mut candidates: Vec<_> = images
            .images()
            .iter()
            .filter(|i| i.root_device_name() == Some("/dev/xvda"))
            .filter(|i| i.name().is_some_and(|n| n.starts_with("amzn")))
            .filter_map(|i| i.image_id().map(str::to_string))
            .collect();
        candidates.sort();
        let image_id = candidates
            .into_iter()
            .next()
            .expect("an Amazon Linux AMI in moto");
        let subnets = clients
            .ec2
            .describe_subnets()
            .send()
            .await
            .expect("DescribeSubnets");
        let mut subnets: Vec<(String, String)> = subnets
            .subnets()
            .iter()
            .filter(|s| s.default_for_az() == Some(true))
            .filter_map(|s| {
                Some((
                    s.availability_zone()?.to_string(),
                    s.subnet_id()?.to_string(),
                ))
            })
            .collect();
        subnets.sort();
        let groups = clients
            .ec2
            .describe_security_groups()
            .send()
            .await
            .expect("DescribeSecurityGroups");
        let security_group = groups
            .security_groups()
            .iter()
            .find(|g| g.group_name() == Some("default"))
            .and_then(|g| g.group_id())
            .expect("the default security group")
            .to_string();
        let subnets: Vec<(String, String)> = subnets.into_iter().take(3).collect();
        Ec2Env {
            image_id,
            zones: subnets.iter().map(|(zone, _)| zone.clone()).collect(),
            subnets: subnets.into_iter().map(|(_, id)| id).collect(),
            security_group,
        }
    }

    /// A MachineClass `workers` for cluster `demo` in `namespace`, on what moto has.
    pub fn class(&self, namespace: &str) -> Object {
        let mut class = capstan_model::MachineClass {
            metadata: meta(namespace, "workers"),
            ..Default::default()
        };
        class.spec.cluster_name = "demo".into();
        class.spec.image_id = self.image_id.clone();
        class.spec.instance_types = vec![INSTANCE_TYPE.into()];
        class.spec.subnets = self.subnets.clone();
        class.spec.security_groups = vec![self.security_group.clone()];
        Object::MachineClass(class)
    }

    /// A launch of `tags` as Capstan makes one (the adapter adds the root volume's
    /// device), with ClientToken `token`.
    pub fn launch(&self, token: &str, tags: BTreeMap<String, String>) -> LaunchRequest {
        LaunchRequest {
            client_token: token.to_string(),
            image_id: self.image_id.clone(),
            instance_type: INSTANCE_TYPE.into(),
            subnet_id: self.subnets[0].clone(),
            security_groups: vec![self.security_group.clone()],
            instance_profile: None,
            root_volume: Default::default(),
            market: Default::default(),
            metadata_options: Default::default(),
            tags,
            user_data: None,
        }
    }
}

fn meta(namespace: &str, name: &str) -> capstan_model::ObjectMeta {
    capstan_model::ObjectMeta {
        name: name.into(),
        namespace: namespace.into(),
        ..Default::default()
    }
}

/// A MachineSet `web` of `replicas` Machines of class `workers`, cluster `demo`.
pub fn machine_set(namespace: &str, replicas: i32) -> Object {
    let mut set = capstan_model::MachineSet {
        metadata: meta(namespace, "web"),
        ..Default::default()
    };
    set.spec.cluster_name = "demo".into();
    set.spec.replicas = replicas;
    set.spec.template.spec.version = "v1.31.2".into();
    set.spec.template.spec.machine_class = "workers".into();
    Object::MachineSet(set)
}

/// The whole set of tags Capstan's launch gives an instance of Machine `machine`
/// (`uid`) in `namespace`, cluster `demo`, installation `installation`.
pub fn capstan_tags(
    installation: &str,
    namespace: &str,
    machine: &str,
    uid: &str,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TAG_INSTALLATION.to_string(), installation.to_string()),
        (TAG_NAMESPACE.to_string(), namespace.to_string()),
        (TAG_CLUSTER.to_string(), "demo".to_string()),
        (TAG_MACHINE.to_string(), machine.to_string()),
        (TAG_MACHINE_UID.to_string(), uid.to_string()),
        (
            "kubernetes.io/cluster/demo".to_string(),
            "owned".to_string(),
        ),
    ])
}

/// A clock stopped at one instant (to run the sweep as if time had passed).
pub struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

/// One test's world: a moto_server of its own, what its EC2 has, and the local
/// runtime provisioned over it. Dropped in that order: the runtime, then moto.
pub struct Stack<C: Compute = Ec2Compute> {
    pub rt: EndpointRuntime<C>,
    pub env: Ec2Env,
    pub moto: Moto,
}

impl Stack {
    /// moto, its EC2 discovered, the runtime started for `installation` (test config).
    pub async fn start(installation: &str) -> Stack {
        Stack::start_with(test_config(installation), |c| {
            Ec2Compute::new(c.ec2.clone())
        })
        .await
    }

    /// As `start`, with the quickstart (adapted to moto) applied.
    pub async fn quickstart(installation: &str, health_check: bool) -> Stack {
        let stack = Stack::start(installation).await;
        stack.apply(&stack.env.quickstart(health_check)).await;
        stack
    }
}

impl<C: Compute> Stack<C> {
    /// As `Stack::start`, with `config` and the Compute `compute` builds over moto's EC2.
    pub async fn start_with(config: EndpointConfig, compute: impl FnOnce(&Clients) -> C) -> Self {
        let moto = Moto::start();
        let clients = moto.clients().await;
        let env = Ec2Env::discover(&clients).await;
        let compute = compute(&clients);
        let rt = EndpointRuntime::start_with(clients, config, compute)
            .await
            .expect("local runtime");
        Stack { rt, env, moto }
    }

    /// The table, over the wire.
    pub fn store(&self) -> DynamoStore {
        self.rt.driver.functions.control_plane.store.inner.clone()
    }

    /// EC2 through the adapter, as the functions use it.
    pub fn ec2(&self) -> Ec2Compute {
        Ec2Compute::new(self.rt.clients().ec2.clone())
    }

    /// `capstan apply` of `objects`.
    pub async fn apply(&self, objects: &[Object]) {
        apply::apply(&self.store(), objects).await.expect("apply");
    }

    pub async fn delete(&self, key: &ObjectKey) {
        apply::delete(&self.store(), key).await.expect("delete");
    }

    /// The installation's name.
    pub fn installation(&self) -> &str {
        &self.rt.config.names.installation
    }
}

impl Ec2Env {
    /// The quickstart, pointed at what moto has. Instance profiles are left out: moto
    /// checks them against its IAM, where none exist.
    pub fn quickstart(&self, health_check: bool) -> Vec<Object> {
        let text =
            std::fs::read_to_string(repo().join("examples/quickstart.yaml")).expect("quickstart");
        let subnets = format!(
            "subnets:\n{}",
            self.subnets
                .iter()
                .map(|s| format!("    - {s}\n"))
                .collect::<String>()
        );
        let mut out = String::new();
        let mut skipping = false;
        for line in text.lines() {
            let trimmed = line.trim_start();
            if skipping {
                if trimmed.starts_with("- subnet-") {
                    continue;
                }
                skipping = false;
            }
            if trimmed.starts_with("instanceProfile:") {
                continue;
            }
            if trimmed.starts_with("subnets:") {
                out.push_str("  ");
                out.push_str(&subnets);
                skipping = true;
                continue;
            }
            if health_check && trimmed == "# healthCheck:" {
                out.push_str("      healthCheck:\n        checks: {nodeStartupTimeoutSeconds: 600}\n        remediation: {triggerIf: {unhealthyLessThanOrEqualTo: \"40%\"}}\n");
                continue;
            }
            out.push_str(
                &line
                    .replace("ami-0abcdef1234567890", &self.image_id)
                    .replace("sg-0123456789abcdef0", &self.security_group),
            );
            out.push('\n');
        }
        capstan_model::manifest::read_manifests("quickstart.yaml", &out)
            .unwrap_or_else(|e| panic!("the adapted quickstart must be valid:\n{e}\n{out}"))
    }
}

/// A local runtime tuned for tests: failed messages come back in 2 s, EC2 is looked at
/// every 300 ms, the sweep runs only when a test asks.
pub fn test_config(installation: &str) -> EndpointConfig {
    EndpointConfig {
        names: Names {
            installation: installation.to_string(),
            ..Names::default()
        },
        queues: QueueOptions {
            visibility_timeout: Duration::from_secs(2),
        },
        relay_every: Duration::from_millis(300),
        idle_sleep: Duration::from_millis(100),
        sweep_every: Duration::from_secs(3600),
        function_timeout: Duration::from_secs(20),
        ..EndpointConfig::default()
    }
}

/// How long any convergence may take over the wire.
pub const CONVERGE_WITHIN: Duration = Duration::from_secs(180);

/// Runs until `done` holds; panics with what did not, on timeout.
pub async fn run_until<C: Compute>(
    rt: &mut EndpointRuntime<C>,
    what: &str,
    mut done: impl FnMut(&Observation) -> Option<Vec<String>>,
) -> Observation {
    let started = Instant::now();
    let outcome = rt
        .run_until(CONVERGE_WITHIN, &mut done)
        .await
        .unwrap_or_else(|e| panic!("{what}: local runtime error: {e}"));
    if let EndpointOutcome::TimedOut(problems) = outcome {
        let observation = rt.observe().await.expect("observe");
        let trees: Vec<String> = observation
            .trees
            .iter()
            .map(capstan_runtime::describe::render)
            .collect();
        panic!(
            "{what}: not done after {:?}:\n{}\n{}",
            started.elapsed(),
            problems.join("\n"),
            trees.join("\n")
        );
    }
    eprintln!("{what}: done in {:.1}s", started.elapsed().as_secs_f64());
    rt.observe().await.expect("observe")
}

/// Every object Ready, every Machine Running, nothing queued, and `live` instances.
pub async fn converge<C: Compute>(
    rt: &mut EndpointRuntime<C>,
    what: &str,
    live: usize,
) -> Observation {
    run_until(rt, what, |o| {
        let mut problems = o.not_converged();
        let n = o.live_instances().len();
        if n != live {
            problems.push(format!("{n} live instances, want {live}"));
        }
        (!problems.is_empty()).then_some(problems)
    })
    .await
}

/// The Machines (not being deleted) in the observation.
pub fn machines(o: &Observation) -> Vec<capstan_model::Machine> {
    o.trees
        .iter()
        .flat_map(|t| {
            t.of_kind(Kind::Machine)
                .filter(|s| !s.is_deleting())
                .filter_map(|s| s.object.as_machine().cloned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every item in the table.
pub fn item_count(o: &Observation) -> usize {
    o.trees.iter().map(|t| t.all().count()).sum()
}
