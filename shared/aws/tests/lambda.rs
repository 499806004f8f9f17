//! The function binaries themselves, not only their handlers: `cargo lambda watch`
//! runs a binary under an emulated Lambda runtime API on loopback, `cargo lambda
//! invoke` hands it a sample event from `events/`, and the binary talks to a
//! moto_server through the SDK, configured only by its environment as in AWS.

mod support;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capstan_aws::Names;
use capstan_aws::provision::{self, QueueOptions};
use capstan_runtime::routes::Reconciler;
use support::*;

/// `cargo lambda watch` in its own process group, stopped (with the function it runs)
/// when dropped.
struct Watch {
    child: Child,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_router_binary_routes_a_sample_stream_batch_under_cargo_lambda() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let names = Names {
        installation: "lambda-test".to_string(),
        ..Names::default()
    };
    let provisioned = provision::ensure(&clients, &names, &QueueOptions::default())
        .await
        .expect("provisioning");

    let port = free_port();
    let log = std::env::temp_dir().join(format!("capstan-cargo-lambda-{port}.log"));
    let log_file = std::fs::File::create(&log).expect("log file");
    let env = format!(
        "AWS_ENDPOINT_URL={},AWS_ACCESS_KEY_ID=testing,AWS_SECRET_ACCESS_KEY=testing,AWS_REGION=us-east-1,CAPSTAN_INSTALLATION={},CAPSTAN_TABLE={},CAPSTAN_BUS={},CAPSTAN_QUEUE_PREFIX={}",
        moto.endpoint, names.installation, names.table, names.bus, names.queue_prefix
    );
    let cargo_lambda = tool("cargo-lambda");
    let child = Command::new(&cargo_lambda)
        .args([
            "lambda",
            "watch",
            "-A",
            "127.0.0.1",
            "-P",
            &port.to_string(),
        ])
        .args(["--package", "stream-router", "--env-var", &env])
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .expect("starting cargo lambda watch");
    let _watch = Watch { child };

    // The first invoke compiles the function: allow for that, on a loaded machine too.
    let started = Instant::now();
    let output = loop {
        let out = Command::new(&cargo_lambda)
            .args([
                "lambda",
                "invoke",
                "-A",
                "127.0.0.1",
                "-P",
                &port.to_string(),
            ])
            .args(["stream-router", "--output-format", "json", "--data-file"])
            .arg(repo().join("events/dynamodb-stream-batch.json"))
            .current_dir(repo())
            .output()
            .expect("running cargo lambda invoke");
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(480),
            "cargo lambda invoke kept failing: {}\nwatch log: {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    let response: serde_json::Value = serde_json::from_str(output.trim())
        .unwrap_or_else(|e| panic!("the function's answer is not JSON ({e}): {output}"));
    assert_eq!(
        response["batchItemFailures"],
        serde_json::json!([]),
        "{response}"
    );

    // The Cluster INSERT went through moto's bus and rule into the cluster queue.
    let queue = &provisioned.queues[&Reconciler::Cluster];
    let received = clients
        .sqs
        .receive_message()
        .queue_url(&queue.url)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("ReceiveMessage");
    let bodies: Vec<serde_json::Value> = received
        .messages()
        .iter()
        .filter_map(|m| serde_json::from_str(m.body()?).ok())
        .collect();
    assert!(
        bodies
            .iter()
            .any(|b| b["detail-type"] == "Cluster Changed" && b["detail"]["name"] == "demo"),
        "{bodies:?}"
    );
}
