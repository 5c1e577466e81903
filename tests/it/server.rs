//! The nats-server Tessera runs on: every role, and the CLI, refuses a server older than
//! the minimum with a message that names both versions.

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use crate::support::{Farm, exits_within};

#[test]
fn every_role_and_the_cli_refuse_a_server_older_than_the_minimum() {
    let farm = Farm::on_old_server();
    let says_why = |what: &str, stderr: &str| {
        assert!(
            stderr.contains("2.11.11") && stderr.contains("2.12.0 or newer"),
            "{what} did not name both versions: {stderr}"
        );
    };
    for binary in ["tessera-planner", "tessera-collector", "tessera-worker"] {
        let mut child = farm
            .command(binary)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = exits_within(&mut child, Duration::from_secs(30));
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(
            status.is_some_and(|s| !s.success()),
            "{binary} kept running on an old server: {stderr}"
        );
        says_why(binary, &stderr);
    }
    let out = farm.cli(&["status", "some-job"]);
    assert!(!out.status.success());
    says_why("tessera status", &String::from_utf8_lossy(&out.stderr));
}
