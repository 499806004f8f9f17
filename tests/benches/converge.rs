//! How fast the embedded control plane converges, and what it costs in AWS calls.
//!
//! `cargo bench -p capstan-tests --bench converge` runs the quickstart (3 + 3), a
//! 200-worker pool, and a scale-down from 200 to 3, on virtual time with zero boot
//! delay, and prints wall time, handler steps, and the EC2 and DynamoDB calls made —
//! per Machine, the figure to compare with Cluster API + CAPA (one RunInstances per
//! machine with no ClientToken, tens of DescribeInstances per machine).

use std::time::{Duration, Instant};

use capstan_embedded::{Embedded, EmbeddedConfig, RunOutcome};
use capstan_model::Object;

fn quickstart(workers: i32) -> Vec<Object> {
    let text = include_str!("../../examples/quickstart.yaml");
    let objects =
        capstan_model::manifest::read_manifests("quickstart.yaml", text).unwrap_or_default();
    objects
        .into_iter()
        .map(|mut o| {
            if let Object::Cluster(c) = &mut o {
                c.spec.workers[0].replicas = Some(workers);
            }
            o
        })
        .collect()
}

struct Figures {
    wall: Duration,
    steps: u64,
    machines: usize,
    run: u64,
    terminate: u64,
    describe: u64,
    writes: u64,
    units: capstan_sim::store::WriteUnits,
}

async fn converge(cp: &mut Embedded) -> Result<(), String> {
    let outcome = cp
        .run_until(
            Duration::from_secs(3600),
            |cp| Some(cp.not_converged()).filter(|p| !p.is_empty()),
            |_| {},
        )
        .await
        .map_err(|e| e.to_string())?;
    match outcome {
        RunOutcome::Done => Ok(()),
        RunOutcome::TimedOut(p) => Err(p.join("; ")),
    }
}

async fn measure(cp: &mut Embedded, objects: &[Object]) -> Result<Figures, String> {
    let (calls0, writes0, steps0) = (cp.ec2.calls(), cp.store.writes(), cp.stats().steps);
    let units0 = cp.store.write_units();
    let started = Instant::now();
    cp.apply(objects).await.map_err(|e| e.to_string())?;
    converge(cp).await?;
    let calls = cp.ec2.calls();
    Ok(Figures {
        wall: started.elapsed(),
        steps: cp.stats().steps - steps0,
        machines: capstan_tests::machines(cp).len(),
        run: calls.run_instances - calls0.run_instances,
        terminate: calls.terminate_instances - calls0.terminate_instances,
        describe: calls.describe_instances - calls0.describe_instances,
        writes: cp.store.writes() - writes0,
        units: {
            let u = cp.store.write_units();
            capstan_sim::store::WriteUnits {
                billed: u.billed - units0.billed,
                unfenced: u.unfenced - units0.unfenced,
                transactions: u.transactions - units0.transactions,
            }
        },
    })
}

fn print(name: &str, f: &Figures, changed: usize) {
    let per = |n: u64| n as f64 / changed.max(1) as f64;
    println!(
        "{name:<28} {:>8.1} ms {:>6} steps {:>4} machines | RunInstances {:>4} ({:.2}/machine)  TerminateInstances {:>4}  DescribeInstances {:>3}  table writes {:>6} ({:.1}/machine)",
        f.wall.as_secs_f64() * 1000.0,
        f.steps,
        f.machines,
        f.run,
        per(f.run),
        f.terminate,
        f.describe,
        f.writes,
        per(f.writes)
    );
    // What fencing every plan (one TransactWriteItems with a condition check on what
    // it read) costs in DynamoDB write units, against the same writes made one by one.
    let u = &f.units;
    println!(
        "{:<28} write units {:>6} in {:>5} transactions; unfenced {:>6}: the fence costs {:+.0}%",
        "",
        u.billed,
        u.transactions,
        u.unfenced,
        (u.billed as f64 / u.unfenced.max(1) as f64 - 1.0) * 100.0
    );
}

fn main() {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start tokio: {e}");
            std::process::exit(1);
        }
    };
    let result: Result<(), String> = runtime.block_on(async {
        let mut config = EmbeddedConfig::default();
        config.ec2.boot_delay = Duration::ZERO;
        config.ec2.shutdown_delay = Duration::ZERO;

        let mut cp = Embedded::virtual_time(config.clone(), 1);
        let f = measure(&mut cp, &quickstart(3)).await?;
        print("quickstart (3 + 3)", &f, 6);

        let mut cp = Embedded::virtual_time(config, 2);
        let f = measure(&mut cp, &quickstart(200)).await?;
        print("200-worker pool (3 + 200)", &f, 203);
        let f = measure(&mut cp, &quickstart(3)).await?;
        print("scale down 200 -> 3", &f, 197);
        Ok(())
    });
    if let Err(e) = result {
        eprintln!("benchmark failed: {e}");
        std::process::exit(1);
    }
}
