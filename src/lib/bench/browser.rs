//! A real headless Chromium driven through W3C WebDriver (`chromedriver`, from Debian's
//! `chromium-driver`): the dashboard's benchmark and its browser tests load pages, run
//! scripts and click as a person would. A thin client of the few WebDriver calls used,
//! over the HTTP client the store already has.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};

/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session; the driver and its browser are killed when it is dropped.
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver leads a process group of its own, with the browser in it.
        if let Ok(pid) = i32::try_from(self.driver.id()) {
            crate::process::kill_group(pid);
        }
        let _ = self.driver.wait();
    }
}

/// Whether this machine has Chromium and its driver (`scripts/setup.sh --tests` installs
/// both).
pub fn available() -> bool {
    crate::farm::find_on_path("chromedriver").is_some()
        && (crate::farm::find_on_path("chromium").is_some()
            || crate::farm::find_on_path("chromium-browser").is_some())
}

impl Browser {
    /// Starts `chromedriver` on a free loopback port and opens a headless Chromium of
    /// `width` × `height` CSS pixels.
    pub async fn start(width: u32, height: u32) -> anyhow::Result<Browser> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let driver_path = crate::farm::find_on_path("chromedriver").context(
            "chromedriver was not found on PATH: install Debian's chromium-driver (`bash scripts/setup.sh --tests`)",
        )?;
        let chromium = crate::farm::find_on_path("chromium")
            .or_else(|| crate::farm::find_on_path("chromium-browser"))
            .context("chromium was not found on PATH: install Debian's chromium")?;
        let port = crate::farm::free_port()?;
        let mut command = Command::new(driver_path);
        command
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let driver = command.spawn().context("starting chromedriver")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("an HTTP client")?;
        let mut browser = Browser {
            driver,
            http,
            session: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        loop {
            let ready = browser.call("GET", "/status", None).await;
            if ready.is_ok_and(|v| v["ready"] == true) {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not answer within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                // No background networking: this machine's closed network refuses it.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-quic",
                    format!("--window-size={width},{height}")],
            },
        }}});
        let created = browser.call("POST", "/session", Some(caps)).await?;
        let id = created["sessionId"]
            .as_str()
            .context("chromedriver gave no session id")?;
        browser.session = format!("{}/session/{id}", browser.session);
        Ok(browser)
    }

    /// One WebDriver call; `path` is under the session (or the driver before one exists).
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.session);
        let request = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.unwrap_or_else(|| json!({})).to_string()),
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("WebDriver {path}"))?;
        let text = response.text().await?;
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("WebDriver {path} answered {text:?}"))?;
        if let Some(error) = value["value"]["error"].as_str() {
            anyhow::bail!(
                "WebDriver {path}: {error}: {}",
                value["value"]["message"].as_str().unwrap_or("")
            );
        }
        Ok(value.get("value").cloned().unwrap_or(value))
    }

    /// Loads `url` and waits for it to have loaded.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.call("POST", "/url", Some(json!({ "url": url })))
            .await?;
        Ok(())
    }

    /// Runs `script` (a function body: `return …`) in the page; its result.
    pub async fn eval(&self, script: &str) -> anyhow::Result<Value> {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Clicks the element that `css` selects.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let found = self
            .call(
                "POST",
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await
            .with_context(|| format!("finding {css}"))?;
        let id = found[ELEMENT]
            .as_str()
            .with_context(|| format!("no element for {css}"))?;
        self.call("POST", &format!("/element/{id}/click"), None)
            .await
            .with_context(|| format!("clicking {css}"))?;
        Ok(())
    }

    /// Waits up to `limit` for `script` to return something other than `null` or `false`;
    /// returns it.
    pub async fn wait_for(&self, script: &str, limit: Duration) -> anyhow::Result<Value> {
        let started = Instant::now();
        loop {
            let value = self.eval(script).await?;
            if !value.is_null() && value != Value::Bool(false) {
                return Ok(value);
            }
            anyhow::ensure!(
                started.elapsed() < limit,
                "the page did not show it within {limit:?}: {script}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ends the session (the browser closes).
    pub async fn close(self) -> anyhow::Result<()> {
        self.call("DELETE", "", None).await?;
        Ok(())
    }
}
