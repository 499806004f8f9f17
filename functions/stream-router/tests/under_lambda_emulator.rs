//! The function binary itself, not only its handler: `cargo lambda watch
//! --only-lambda-apis` serves the Lambda runtime API on loopback, this package's own
//! `stream-router` binary (the one `cargo test` just built, so nothing is rebuilt under
//! other flags) polls it for invocations, `cargo lambda invoke` hands it a sample event
//! from `events/`, and the binary talks to a moto_server through the SDK, configured
//! only by its environment as in AWS.

#[path = "../../../shared/endpoint/tests/support/mod.rs"]
mod support;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capstan_aws::Names;
use capstan_aws::provision::{self, QueueOptions};
use capstan_runtime::routes::Reconciler;
use support::*;

/// A child in its own process group, stopped (with whatever it started) when dropped.
struct Group {
    child: Child,
}

impl Drop for Group {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.child.wait();
    }
}

fn spawn(command: &mut Command, log: &std::path::Path) -> Group {
    let log_file = std::fs::File::create(log).expect("log file");
    let child = command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
    Group { child }
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
    let api_log = std::env::temp_dir().join(format!("capstan-lambda-api-{port}.log"));
    let fn_log = std::env::temp_dir().join(format!("capstan-stream-router-{port}.log"));
    let cargo_lambda = tool("cargo-lambda");
    let _api = spawn(
        Command::new(&cargo_lambda)
            .args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1"])
            .args(["-P", &port.to_string()])
            .current_dir(repo()),
        &api_log,
    );
    // The function polls the runtime API from its first moment: start it once the
    // emulator listens.
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the Lambda runtime API emulator never listened: {}",
            std::fs::read_to_string(&api_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The environment Lambda gives a function, and the installation's names.
    let mut function = spawn(
        Command::new(env!("CARGO_BIN_EXE_stream-router"))
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_ENDPOINT_URL", &moto.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("CAPSTAN_INSTALLATION", &names.installation)
            .env("CAPSTAN_TABLE", &names.table)
            .env("CAPSTAN_BUS", &names.bus)
            .env("CAPSTAN_QUEUE_PREFIX", &names.queue_prefix),
        &fn_log,
    );

    let started = Instant::now();
    let output = loop {
        if let Ok(Some(status)) = function.child.try_wait() {
            panic!(
                "the function exited ({status}): {}",
                std::fs::read_to_string(&fn_log).unwrap_or_default()
            );
        }
        // Bounded: an invoke nobody answers would wait forever.
        let out = Command::new("timeout")
            .arg("60")
            .arg(&cargo_lambda)
            .args([
                "lambda",
                "invoke",
                "-A",
                "127.0.0.1",
                "-P",
                &port.to_string(),
            ])
            .args(["_", "--output-format", "json", "--data-file"])
            .arg(repo().join("events/dynamodb-stream-batch.json"))
            .current_dir(repo())
            .output()
            .expect("running cargo lambda invoke");
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "cargo lambda invoke kept failing: {}\nemulator log: {}\nfunction log: {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&api_log).unwrap_or_default(),
            std::fs::read_to_string(&fn_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let response: serde_json::Value = serde_json::from_str(output.trim())
        .unwrap_or_else(|e| panic!("the function's answer is not JSON ({e}): {output}"));
    assert_eq!(
        response["batchItemFailures"],
        serde_json::json!([]),
        "{response}"
    );

    // The Cluster INSERT went through moto's bus and the cluster reconciler's rule into
    // the work queue, wrapped with the reconciler it is for.
    let queue = &provisioned.work;
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
            .any(|b| b["reconciler"] == Reconciler::Cluster.name()
                && b["event"]["detail-type"] == "Cluster Changed"
                && b["event"]["detail"]["name"] == "demo"),
        "{bodies:?}"
    );
}
