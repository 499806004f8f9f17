//! The README's newcomer's tour, run exactly as written: `capstan up` in the
//! background, then every command of "terminal 2" in order, through `sh -c`.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::{Running, Workdir, repo, text};

/// The commands between `<!-- tour -->` and `<!-- /tour -->`, without comments or blanks.
fn tour() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let start = readme
        .find("<!-- tour -->")
        .expect("the tour's start marker");
    let end = readme
        .find("<!-- /tour -->")
        .expect("the tour's end marker");
    readme[start..end]
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with('#') && !l.starts_with("```") && !l.starts_with("<!--")
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn the_readme_tour_runs_as_written() {
    let w = Workdir::new("tour");
    std::fs::create_dir_all(w.dir.join("examples")).expect("examples/");
    std::fs::copy(
        repo().join("examples/quickstart.yaml"),
        w.dir.join("examples/quickstart.yaml"),
    )
    .expect("copy the quickstart");
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_capstan"))
        .parent()
        .expect("the binary's directory")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let shell = |line: &str| {
        let mut c = std::process::Command::new("sh");
        c.args(["-c", line])
            .current_dir(&w.dir)
            .env("PATH", &path)
            .env("CAPSTAN_CONFIG", w.config())
            // Simulated instances boot in 100 ms rather than 3 s: the same tour, quicker.
            .env("CAPSTAN_BOOT_DELAY", "100ms")
            .env("NO_COLOR", "1");
        c
    };
    let commands = tour();
    assert_eq!(commands.first().map(String::as_str), Some("capstan up"));
    // `exec`: the shell becomes the command, so stopping it stops the command (a
    // shell of its own would be killed and leave `capstan up` running).
    let _up = Running(
        shell(&format!("exec {}", commands[0]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("capstan up"),
    );
    let state = w.dir.join(".capstan/state.db");
    for _ in 0..100 {
        if state.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut said = Vec::new();
    for line in &commands[1..] {
        if line.contains(" -w") {
            // A watch runs until stopped: let it print, then stop it as Ctrl-C would.
            let watch = Running(
                shell(&format!("exec {line}"))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("watch"),
            );
            std::thread::sleep(Duration::from_secs(1));
            drop(watch);
            continue;
        }
        let out = shell(line).output().expect("run");
        assert!(out.status.success(), "{line}:\n{}", text(&out));
        said.push((line.clone(), text(&out)));
    }
    let output = |prefix: &str| {
        said.iter()
            .filter(|(l, _)| l.starts_with(prefix))
            .map(|(_, o)| o.clone())
            .collect::<Vec<_>>()
    };
    let plan = output("capstan apply -f new-image.yaml --dry-run").join("");
    assert!(
        plan.contains("demo-workers: 3 to replace, 2 to remove"),
        "{plan}"
    );
    assert!(plan.contains("demo-control-plane: 3 to replace"), "{plan}");
    let machines = output("capstan get machines").join("");
    assert_eq!(machines.matches("Running").count(), 6, "{machines}");
    for status in output("capstan rollout status") {
        assert!(status.contains("successfully rolled out"), "{status}");
    }
    let deleted = output("capstan delete cluster demo --wait").join("");
    assert!(deleted.contains("gone"), "{deleted}");
}
