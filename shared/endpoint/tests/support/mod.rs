//! What the moto tests share: a moto_server of their own on a free loopback port, the
//! AMI, subnets and security group moto really has (validation is on, so invented ones
//! fail as on AWS), manifests built from them, and bounded runs of the local runtime.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capstan_aws::provision::QueueOptions;
use capstan_aws::{Clients, Names, Settings};
use capstan_endpoint::{EndpointConfig, EndpointOutcome, EndpointRuntime, Observation};
use capstan_model::{Kind, Object};
use capstan_runtime::ports::Compute;

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
    pub security_group: String,
}

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
        Ec2Env {
            image_id,
            subnets: subnets.into_iter().take(3).map(|(_, id)| id).collect(),
            security_group,
        }
    }

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
