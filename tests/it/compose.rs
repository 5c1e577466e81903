//! `compose.yaml` checked without a Docker engine: every service's command, health check and
//! environment against the real binaries' flags (`--help` of Tessera's binaries,
//! `nats-server --help`, `weed mini -h`), its image against the Dockerfile's stages, and
//! its ports, volumes, dependencies and stop grace period against each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::bin;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn compose() -> Value {
    compose_with(&BTreeMap::new())
}

/// compose.yaml as Compose reads it with `env` set: each `${NAME:-default}` and `${NAME}`
/// replaced by its value in `env`, or else its default.
fn compose_with(env: &BTreeMap<String, String>) -> Value {
    let raw = std::fs::read_to_string(format!("{ROOT}/compose.yaml")).unwrap();
    let mut text = String::new();
    let mut rest = raw.as_str();
    while let Some(at) = rest.find("${") {
        text.push_str(&rest[..at]);
        let end = rest[at..].find('}').expect("a closed ${…}") + at;
        let inner = &rest[at + 2..end];
        let (name, default) = inner.split_once(":-").unwrap_or((inner, ""));
        text.push_str(env.get(name).map_or(default, String::as_str));
        rest = &rest[end + 1..];
    }
    text.push_str(rest);
    let mut yaml: serde_norway::Value = serde_norway::from_str(&text).expect("compose.yaml parses");
    yaml.apply_merge().expect("merge keys resolve");
    serde_json::to_value(&yaml).unwrap()
}

fn help(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `--flag` names in a clap help text, and `[env: NAME` names.
fn clap_flags(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut flags = BTreeSet::new();
    let mut envs = BTreeSet::new();
    for word in text.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']') {
        if let Some(flag) = word.strip_prefix("--") {
            let flag = flag.split(['=', '<']).next().unwrap();
            if !flag.is_empty() {
                flags.insert(flag.to_string());
            }
        }
    }
    for part in text.split("[env: ").skip(1) {
        envs.insert(part.split(['=', ']']).next().unwrap().to_string());
    }
    (flags, envs)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// Checks one Tessera command line (binary, optional subcommand, flags).
fn check_tessera_command(
    words: &[String],
    binaries: &BTreeSet<String>,
    envs: &mut BTreeSet<String>,
    what: &str,
) {
    let binary = &words[0];
    assert!(
        binaries.contains(binary),
        "{what}: {binary} is not one of the image's binaries {binaries:?}"
    );
    let mut help_args: Vec<&str> = Vec::new();
    if binary == "tessera"
        && let Some(sub) = words.get(1).filter(|w| !w.starts_with('-'))
    {
        help_args.push(sub);
    }
    help_args.push("--help");
    let text = help(bin(binary).to_str().unwrap(), &help_args);
    assert!(
        !text.contains("unrecognized subcommand"),
        "{what}: {words:?}: {text}"
    );
    let (flags, binary_envs) = clap_flags(&text);
    envs.extend(binary_envs);
    for word in words {
        if let Some(flag) = word.strip_prefix("--") {
            let flag = flag.split('=').next().unwrap();
            assert!(
                flags.contains(flag),
                "{what}: {binary} has no --{flag} (it has {flags:?})"
            );
        }
    }
}

fn seconds(text: &str) -> u64 {
    humantime::parse_duration(text).unwrap().as_secs()
}

#[test]
fn compose_yaml_matches_the_real_binaries_images_and_ports() {
    let compose = compose();
    let services = compose["services"].as_object().expect("services");
    let dockerfile = std::fs::read_to_string(format!("{ROOT}/Dockerfile")).unwrap();
    let stages: BTreeSet<String> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .filter_map(|l| l.split(" AS ").nth(1))
        .map(|s| s.trim().to_string())
        .collect();
    // Binaries the image holds: those the build stage copies, each a [[bin]] of the crate.
    let cargo = std::fs::read_to_string(format!("{ROOT}/Cargo.toml")).unwrap();
    let binaries: BTreeSet<String> = [
        "tessera",
        "tessera-planner",
        "tessera-collector",
        "tessera-worker",
    ]
    .into_iter()
    .filter(|b| {
        dockerfile.contains(&format!("target/release/{b} "))
            || dockerfile.contains(&format!("target/release/{b}\n"))
    })
    .map(String::from)
    .collect();
    assert_eq!(
        binaries.len(),
        4,
        "the Dockerfile copies every role's binary: {binaries:?}"
    );
    for b in &binaries {
        assert!(
            cargo.contains(&format!("name = \"{b}\"")),
            "{b} is not a [[bin]]"
        );
    }
    let volumes: BTreeSet<String> = compose["volumes"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let mut known_env: BTreeSet<String> = [
        "RUST_LOG",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let mut env_used: Vec<(String, String)> = Vec::new();

    for (name, service) in services {
        let what = format!("service {name}");
        let image = service["image"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no image"));
        if let Some(build) = service.get("build") {
            let target = build["target"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: build without target"));
            assert!(
                stages.contains(target),
                "{what}: no Dockerfile stage {target:?} ({stages:?})"
            );
            assert_eq!(build["context"], ".", "{what}");
        }
        for dep in service["depends_on"]
            .as_object()
            .map(|d| d.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            assert!(
                services.contains_key(&dep),
                "{what}: depends on unknown service {dep}"
            );
        }
        for v in strings(&service["volumes"]) {
            let source = v.split(':').next().unwrap();
            assert!(
                source.starts_with('.') || volumes.contains(source),
                "{what}: volume {source} is not declared"
            );
        }
        // A NATS server's environment is its configuration's (SERVER_NAME).
        if let Some(env) = service["environment"]
            .as_object()
            .filter(|_| !image.starts_with("nats:"))
        {
            for (k, v) in env {
                env_used.push((k.clone(), v.as_str().unwrap_or_default().to_string()));
            }
        }
        let long_running = service["restart"] != "no" && service.get("profiles").is_none();
        if long_running {
            assert!(
                service.get("healthcheck").is_some(),
                "{what}: no health check"
            );
        }
        let command = strings(&service["command"]);
        match name.as_str() {
            _ if image.starts_with("nats:") => check_nats_service(name, service, &command),
            "s3" => {
                assert!(image.starts_with("chrislusf/seaweedfs:"), "{what}: {image}");
                assert_eq!(command[0], "mini");
                let text = help("weed", &["mini", "-h"]);
                for word in &command[1..] {
                    let flag = word.split('=').next().unwrap();
                    let listed = text
                        .lines()
                        .any(|l| l.trim_start().split(' ').next() == Some(flag));
                    assert!(listed, "{what}: weed mini has no {flag}");
                }
                assert!(command.contains(&"-s3.port=8333".to_string()));
                assert!(command.contains(&"-bucket=tessera".to_string()));
                assert!(strings(&service["ports"]).contains(&"8333:8333".to_string()));
            }
            "prometheus" => {
                assert!(image.starts_with("prom/prometheus:"), "{what}: {image}");
                assert_eq!(
                    strings(&service["profiles"]),
                    ["metrics"],
                    "{what}: optional"
                );
                let config = command
                    .iter()
                    .find_map(|w| w.strip_prefix("--config.file=").map(String::from))
                    .expect("--config.file");
                let mount = strings(&service["volumes"])
                    .into_iter()
                    .find(|v| v.split(':').nth(1) == Some(config.as_str()))
                    .unwrap_or_else(|| panic!("{what}: {config} is not mounted"));
                let file = Path::new(ROOT).join(mount.split(':').next().unwrap());
                let scrape: Value =
                    serde_norway::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
                // Each role's service is scraped on the port its metrics address names.
                let port = services["planner"]["environment"]["TESSERA_METRICS_ADDR"]
                    .as_str()
                    .and_then(|a| a.rsplit(':').next())
                    .expect("the roles serve metrics")
                    .to_string();
                let jobs = scrape["scrape_configs"].as_array().expect("scrape_configs");
                for role in ["planner", "collector", "worker"] {
                    let target = format!("{role}:{port}");
                    let scraped = jobs.iter().any(|job| {
                        let statics = job["static_configs"][0]["targets"].clone();
                        strings(&statics).contains(&target)
                            || (strings(&job["dns_sd_configs"][0]["names"]) == [role]
                                && job["dns_sd_configs"][0]["port"]
                                    .as_u64()
                                    .map(|p| p.to_string())
                                    == Some(port.clone()))
                    });
                    assert!(
                        scraped,
                        "{}: {role} is not scraped on {port}",
                        file.display()
                    );
                    assert!(services.contains_key(role));
                }
            }
            _ => {
                assert!(image.starts_with("tessera"), "{what}: {image}");
                let words = if command.is_empty() || command[0] == "--help" {
                    let mut w = strings(&service["entrypoint"]);
                    w.extend(command.clone());
                    w
                } else {
                    command.clone()
                };
                check_tessera_command(&words, &binaries, &mut known_env, &what);
                if let Some(check) = service.get("healthcheck") {
                    let test = strings(&check["test"]);
                    let words: Vec<String> = match test[0].as_str() {
                        "CMD" => test[1..].to_vec(),
                        "CMD-SHELL" => test[1].split_whitespace().map(String::from).collect(),
                        other => panic!("{what}: health check kind {other}"),
                    };
                    check_tessera_command(
                        &words,
                        &binaries,
                        &mut known_env,
                        &format!("{what} health check"),
                    );
                }
            }
        }
    }

    // The environment names only variables the binaries (or object_store) read, and points
    // at the services above.
    let env: BTreeMap<String, String> = env_used.into_iter().collect();
    for k in env.keys() {
        assert!(
            known_env.contains(k),
            "environment variable {k} is read by nothing ({known_env:?})"
        );
    }
    assert_eq!(env["NATS_URL"], "nats://nats:4222");
    assert_eq!(env["AWS_ENDPOINT_URL"], "http://s3:8333");
    assert!(env["TESSERA_STORE"].starts_with("s3://tessera/"));

    // The dashboard listens beyond its container's loopback, so with a token, on the port
    // the service publishes (on the host's loopback).
    let web = &services["web"];
    let command = strings(&web["command"]);
    let listen = &command[command.iter().position(|w| w == "--listen").unwrap() + 1];
    let port = listen.rsplit(':').next().unwrap();
    assert_eq!(
        strings(&web["ports"]),
        [format!("127.0.0.1:{port}:{port}")],
        "service web: its port"
    );
    let raw: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(format!("{ROOT}/compose.yaml")).unwrap())
            .unwrap();
    let token = raw["services"]["web"]["environment"]["TESSERA_WEB_TOKEN"]
        .as_str()
        .expect("service web: a token, as it listens beyond loopback");
    let default = token
        .strip_prefix("${TESSERA_WEB_TOKEN:-")
        .and_then(|t| t.strip_suffix('}'))
        .expect("service web: the token from the environment, with a default");
    tessera::web::access::parse_tokens(default)
        .unwrap_or_else(|e| panic!("service web: its default token: {e}"));

    // Workers scale: no fixed name, no host ports, and a stop grace period longer than the
    // worker's own drain grace.
    let worker = &services["worker"];
    assert!(worker.get("container_name").is_none() && worker.get("ports").is_none());
    let command = strings(&worker["command"]);
    let grace = command
        .iter()
        .position(|w| w == "--grace")
        .map_or(30, |i| seconds(&command[i + 1]));
    let stop = seconds(
        worker["stop_grace_period"]
            .as_str()
            .expect("stop_grace_period"),
    );
    assert!(
        stop > grace,
        "stop_grace_period {stop}s must exceed the worker's grace {grace}s"
    );
}

/// A NATS service: the image of the minor version the scripts install, flags the server
/// knows, and a mounted configuration the server accepts (with the service's environment),
/// with JetStream on the data volume and a durability chosen on purpose.
fn check_nats_service(name: &str, service: &Value, command: &[String]) {
    let what = format!("service {name}");
    let image = service["image"].as_str().unwrap();
    let setup = std::fs::read_to_string(Path::new(ROOT).join("scripts/setup.sh")).unwrap();
    let pinned = setup
        .lines()
        .find_map(|l| l.strip_prefix("NATS_VERSION="))
        .expect("scripts/setup.sh pins NATS_VERSION");
    let minor = pinned.rsplit_once('.').unwrap().0;
    assert!(
        image.starts_with(&format!("nats:{minor}")),
        "{what}: {image} is not nats-server {minor} (scripts install {pinned})"
    );
    let text = help("nats-server", &["--help"]);
    for word in command.iter().filter(|w| w.starts_with('-')) {
        assert!(
            text.contains(&format!("{word} ")),
            "{what}: nats-server has no {word}"
        );
    }
    let config = &command[command.iter().position(|w| w == "--config").unwrap() + 1];
    let volumes = strings(&service["volumes"]);
    let mount = volumes
        .iter()
        .find(|v| v.split(':').nth(1) == Some(config.as_str()))
        .unwrap_or_else(|| panic!("{what}: {config} is not mounted"));
    let file = Path::new(ROOT).join(mount.split(':').next().unwrap());
    // Each file it includes is mounted beside it under its own name.
    let mut text = std::fs::read_to_string(&file).unwrap();
    for line in text.clone().lines() {
        if let Some(included) = line.trim().strip_prefix("include ") {
            let included = included.trim().trim_matches('"');
            let dir = Path::new(config.as_str()).parent().unwrap();
            let target = dir.join(included).display().to_string();
            let source = volumes
                .iter()
                .find(|v| v.split(':').nth(1) == Some(target.as_str()))
                .unwrap_or_else(|| {
                    panic!("{what}: {target}, included by {config}, is not mounted")
                });
            let source = Path::new(ROOT).join(source.split(':').next().unwrap());
            assert_eq!(
                source.parent(),
                file.parent(),
                "{what}: {included} is beside {} in the repository",
                file.display()
            );
            text.push_str(&std::fs::read_to_string(source).unwrap());
        }
    }
    let env: Vec<(String, String)> = service["environment"]
        .as_object()
        .map(|e| {
            e.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let check = Command::new("nats-server")
        .arg("-t")
        .arg("-c")
        .arg(&file)
        .envs(env)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{what}: {}: {}",
        file.display(),
        String::from_utf8_lossy(&check.stderr)
    );
    for needle in [
        "jetstream",
        "store_dir: \"/data\"",
        "sync_interval:",
        "port: 4222",
    ] {
        assert!(
            text.contains(needle),
            "{what}: {}: no {needle}",
            file.display()
        );
    }
    assert!(volumes.iter().any(|v| v.ends_with(":/data")), "{what}");
    if name == "nats" {
        assert!(strings(&service["ports"]).contains(&"4222:4222".to_string()));
    }
}

/// deploy/cluster.env's settings.
fn cluster_env() -> BTreeMap<String, String> {
    std::fs::read_to_string(format!("{ROOT}/deploy/cluster.env"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn the_cluster_profile_runs_three_nats_servers_as_one_cluster_the_roles_reach_all_three() {
    let env = cluster_env();
    assert_eq!(env["COMPOSE_PROFILES"], "cluster");
    let cluster = compose_with(&env);
    let services = cluster["services"].as_object().unwrap();
    let servers: Vec<&String> = services
        .iter()
        .filter(|(_, s)| s["image"].as_str().is_some_and(|i| i.starts_with("nats:")))
        .map(|(name, _)| name)
        .collect();
    assert_eq!(servers, ["nats", "nats-2", "nats-3"]);
    let mut names = BTreeSet::new();
    for name in &servers {
        let service = &services[*name];
        if *name != "nats" {
            assert_eq!(strings(&service["profiles"]), ["cluster"], "{name}");
        }
        // Every server runs the cluster's configuration here, checked as the server reads
        // it (with its own SERVER_NAME).
        let command = strings(&service["command"]);
        assert_eq!(
            command,
            ["--config", "/etc/nats/nats-cluster.conf"],
            "{name}"
        );
        check_nats_service(name, service, &command);
        names.insert(
            service["environment"]["SERVER_NAME"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        let data = strings(&service["volumes"])
            .into_iter()
            .find(|v| v.ends_with(":/data"))
            .unwrap();
        assert!(
            cluster["volumes"]
                .as_object()
                .unwrap()
                .contains_key(data.split(':').next().unwrap()),
            "{name}: its data volume is declared"
        );
    }
    assert_eq!(
        names.len(),
        3,
        "each server has a name of its own: {names:?}"
    );
    // The routes name every server at its cluster port.
    let conf = std::fs::read_to_string(format!("{ROOT}/deploy/nats-cluster.conf")).unwrap();
    assert!(conf.contains("port: 6222"));
    for name in &servers {
        assert!(
            conf.contains(&format!("\"nats-route://{name}:6222\"")),
            "deploy/nats-cluster.conf: no route to {name}"
        );
    }
    // The roles connect to all three and keep three replicas; the layout is applied once
    // all three are up.
    let role_env = &services["planner"]["environment"];
    let urls: Vec<&str> = role_env["NATS_URL"].as_str().unwrap().split(',').collect();
    let wanted: Vec<String> = servers.iter().map(|s| format!("nats://{s}:4222")).collect();
    assert_eq!(urls, wanted);
    // (Compose interpolates parsed strings; this test interpolates the text, so a number
    // may come out.)
    let replicas: tessera::bus::streams::Replicas = role_env["TESSERA_REPLICAS"]
        .to_string()
        .trim_matches('"')
        .parse()
        .unwrap();
    assert_eq!(replicas, tessera::bus::streams::Replicas::Exactly(3));
    for name in ["nats-2", "nats-3"] {
        let dep = &services["init"]["depends_on"][name];
        assert_eq!(dep["condition"], "service_healthy", "init waits for {name}");
        assert_eq!(dep["required"], false, "ignored without the profile");
    }
    // Without the cluster's settings, one server and `auto`.
    let single = compose();
    let role_env = &single["services"]["planner"]["environment"];
    assert_eq!(role_env["NATS_URL"], "nats://nats:4222");
    assert_eq!(role_env["TESSERA_REPLICAS"], "auto");
}
