//! Contexts, like kubectl's: `capstan config ...` and `--context`.

mod support;

use support::{Workdir, names, path_str, quickstart, text};

#[test]
fn with_no_configuration_the_context_is_local() {
    let w = Workdir::new("ctx-default");
    assert_eq!(w.ok(&["config", "current-context"]).trim(), "local");
    let list = w.ok(&["config", "get-contexts"]);
    assert!(list.contains("*         local"), "{list}");
    assert!(list.contains("local control plane in .capstan"), "{list}");
}

#[test]
fn set_use_and_list_contexts() {
    let w = Workdir::new("ctx-set");
    let out = w.ok(&[
        "config",
        "set-context",
        "moto",
        "--endpoint",
        "http://127.0.0.1:5999",
        "--installation",
        "dev",
    ]);
    assert!(out.contains("Context \"moto\" set"), "{out}");
    w.ok(&[
        "config",
        "set-context",
        "prod",
        "--region",
        "eu-west-1",
        "--profile",
        "ops",
        "--installation",
        "capstan",
    ]);
    w.ok(&["config", "use-context", "moto"]);
    assert_eq!(w.ok(&["config", "current-context"]).trim(), "moto");
    let list = w.ok(&["config", "get-contexts"]);
    let current = list
        .lines()
        .find(|l| l.starts_with('*'))
        .unwrap_or_default();
    assert!(
        current.contains("moto")
            && current.contains("endpoint http://127.0.0.1:5999, installation dev"),
        "{list}"
    );
    assert!(
        list.contains("AWS eu-west-1, installation capstan, profile ops"),
        "{list}"
    );
    let file = std::fs::read_to_string(w.config()).expect("config file");
    assert!(file.contains("current-context: moto"), "{file}");

    let unknown = w.run(&["config", "use-context", "staging"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown).contains("no context named \"staging\"")
            && text(&unknown).contains("capstan config set-context staging"),
        "{}",
        text(&unknown)
    );
    let neither = w.run(&["config", "set-context", "x", "--installation", "y"]);
    assert_eq!(neither.status.code(), Some(1));
    assert!(
        text(&neither).contains("exactly one of --endpoint"),
        "{}",
        text(&neither)
    );
}

#[test]
fn a_local_context_keeps_its_state_in_its_own_directory() {
    let w = Workdir::new("ctx-local");
    let state = w.dir.join("elsewhere");
    w.ok(&[
        "config",
        "set-context",
        "scratch",
        "--local",
        &path_str(&state),
    ]);
    let file = w.write("quickstart.yaml", &quickstart());
    w.ok(&["apply", "-f", &file, "--context", "scratch"]);
    assert!(state.join("journal.jsonl").is_file());
    assert!(!w.dir.join(".capstan/journal.jsonl").exists());
    assert_eq!(names(&w, "md", &["--context", "scratch"]).len(), 2);
    assert!(
        names(&w, "md", &[]).is_empty(),
        "the default local context is empty"
    );
}

#[test]
fn the_configuration_file_lives_in_the_xdg_config_directory() {
    let w = Workdir::new("ctx-xdg");
    let xdg = w.dir.join("xdg");
    let out = w
        .command(&[
            "config",
            "set-context",
            "m",
            "--endpoint",
            "http://127.0.0.1:1",
        ])
        .env_remove("CAPSTAN_CONFIG")
        .env("XDG_CONFIG_HOME", &xdg)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    assert!(xdg.join("capstan/config.yaml").is_file());
}

#[test]
fn an_unreachable_endpoint_is_an_error_that_names_the_table() {
    let w = Workdir::new("ctx-unreachable");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = w.run(&["get", "machines", "--endpoint", &url]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("reading table \"capstan\""),
        "{}",
        text(&out)
    );
}
