//! NATS security: a server with TLS (certificates made here, signed by a CA made here) and a
//! user and password accepts Tessera's roles configured for it and refuses them otherwise,
//! with a clear error and without printing the secret; the same for a token.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Farm, bin};

const PASSWORD: &str = "correct-horse-battery";
const TOKEN: &str = "s3cr3t-t0ken";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl (install it with `apt-get install -y openssl`)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Tessera test CA",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
}

fn tls_and_password(dir: &Path) -> String {
    make_certificates(dir);
    format!(
        "tls {{\n  cert_file: \"{0}/server.pem\"\n  key_file: \"{0}/server.key\"\n  timeout: 5\n}}\nauthorization {{\n  user: tessera\n  password: \"{PASSWORD}\"\n}}",
        dir.display()
    )
}

fn token(_dir: &Path) -> String {
    format!("authorization {{\n  token: \"{TOKEN}\"\n}}")
}

/// Runs the CLI with exactly `env` for NATS (none of the farm's own).
fn cli(farm: &Farm, env: &[(&str, String)], args: &[&str]) -> std::process::Output {
    Command::new(bin("tessera"))
        .args(args)
        .env("NATS_URL", farm.nats.url())
        .env("TESSERA_STORE", &farm.store_url)
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_custom_ca_and_a_password_accept_configured_roles_and_refuse_others() {
    let mut farm = Farm::with_server(Some(&tls_and_password));
    let ca = farm.dir.path().join("ca.pem").display().to_string();
    farm.env = vec![
        ("NATS_USER".into(), "tessera".into()),
        ("NATS_PASSWORD".into(), PASSWORD.into()),
        ("NATS_CA".into(), ca.clone()),
    ];
    farm.start("tessera-planner", &[]);
    farm.start("tessera-collector", &[]);
    farm.start_worker(0, &[]);
    // Configured: a job runs end to end.
    let id = farm.submit(
        "ok",
        "renderer = \"noop\"\n[frames]\nrange = \"1-3\"\n[settings]\nsleep_ms = 10\n",
    );
    farm.wait_done(&id);

    let user = ("NATS_USER", "tessera".to_string());
    let with_ca = ("NATS_CA", ca.clone());
    for (env, expect) in [
        (
            vec![
                user.clone(),
                ("NATS_PASSWORD", "wrong-password".into()),
                with_ca.clone(),
            ],
            "refused the credentials",
        ),
        (vec![with_ca.clone()], "refused the credentials"),
        (
            vec![user.clone(), ("NATS_PASSWORD", PASSWORD.into())],
            "TLS",
        ),
        (vec![user.clone(), with_ca.clone()], "needs a password"),
    ] {
        let out = cli(&farm, &env, &["init"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{env:?} was accepted");
        assert!(stderr.contains(expect), "{env:?}: {stderr}");
        assert!(
            !stderr.contains(PASSWORD) && !stderr.contains("wrong-password"),
            "{stderr}"
        );
    }
    // A service with the wrong password exits with the error instead of retrying forever.
    let started = Instant::now();
    let out = Command::new(bin("tessera-worker"))
        .env("NATS_URL", farm.nats.url())
        .env("TESSERA_STORE", &farm.store_url)
        .env("NATS_USER", "tessera")
        .env("NATS_PASSWORD", "wrong-password")
        .env("NATS_CA", &ca)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused the credentials"), "{stderr}");
    assert!(!stderr.contains("wrong-password"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_server_accepts_the_token_and_refuses_its_absence() {
    let farm = Farm::with_server(Some(&token));
    let out = cli(&farm, &[("NATS_TOKEN", TOKEN.into())], &["init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&farm, &[], &["init"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused the credentials"));
    let out = cli(
        &farm,
        &[("NATS_TOKEN", "nope".into())],
        &["--nats", &farm.nats.url(), "init"],
    );
    assert!(!out.status.success());
    // A credentials file that cannot be read is named.
    let out = cli(
        &farm,
        &[("NATS_CREDS", "/nonexistent/user.creds".into())],
        &["init"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("/nonexistent/user.creds"),
        "{stderr}"
    );
}
