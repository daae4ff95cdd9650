//! Headless Chromium for tests that look at pages as a person does.
//!
//! [`Browser::start`] runs a private chromedriver on a free port and opens a
//! WebDriver session in a fresh Chromium profile, with the flags Chromium
//! needs to run as root in a container and to stay off the network (no
//! background requests, updates, sync or QUIC): the only hosts a test
//! browser reaches are the ones it is sent to. [`Browser::screenshot`] keeps
//! a PNG of the current page under the test output folder, numbered in the
//! order taken, so a failing run leaves the pages it saw behind.
//!
//! Chromium and chromedriver come from Debian's `chromium` and
//! `chromium-driver`, which `scripts/services` installs; `CHROMIUM` and
//! `CHROMEDRIVER` name other binaries. A machine without them fails the test
//! with that hint rather than skipping it.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::{
    helpers::{DEADLINE, eventually},
    services::free_port,
};

/// How long one WebDriver command (a page load, a click) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The flags that let Chromium run headless as root, with nothing of its
/// own on the network.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--window-size=1024,900",
];

/// The folder every test's screenshots go under:
/// `TEST_OUTPUT_DIR`, else `target/test-output`.
pub fn test_output_dir() -> PathBuf {
    std::env::var_os("TEST_OUTPUT_DIR").map_or_else(
        || {
            Path::new(env!("CARGO_TARGET_TMPDIR"))
                .parent()
                .expect("target/tmp has a parent")
                .join("test-output")
        },
        PathBuf::from,
    )
}

/// A Chromium session driven by its own chromedriver; both end when it
/// drops.
#[derive(Debug)]
pub struct Browser {
    client: Client,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
    shots: PathBuf,
    taken: std::sync::atomic::AtomicUsize,
}

fn binary(variable: &str, default: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| default.to_owned())
}

impl Browser {
    /// Starts chromedriver and a session; screenshots go to
    /// `<test output>/<test>/` (emptied first).
    pub async fn start(test: &str) -> Self {
        let chromedriver = binary("CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium = binary("CHROMIUM", "/usr/bin/chromium");
        for path in [&chromedriver, &chromium] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: run scripts/services, which installs Debian's chromium and chromium-driver (or set CHROMIUM / CHROMEDRIVER)"
            );
        }
        let port = free_port();
        let driver = tokio::process::Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {chromedriver}: {e}"));
        let webdriver = format!("http://127.0.0.1:{port}");
        let status = crate::helpers::http_client();
        eventually("chromedriver to answer", || async {
            let response = status
                .get(format!("{webdriver}/status"))
                .send()
                .await
                .ok()?;
            let body: serde_json::Value = response.json().await.ok()?;
            (body["value"]["ready"] == true).then_some(())
        })
        .await;

        let profile = tempfile::tempdir().expect("a fresh Chromium profile");
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut capabilities = fantoccini::wd::Capabilities::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chromium, "args": args }),
        );
        let client = tokio::time::timeout(
            COMMAND_TIMEOUT,
            ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities)
                .connect(&webdriver),
        )
        .await
        .expect("a Chromium session within the deadline")
        .expect("a Chromium session");

        let shots = test_output_dir().join(test);
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).expect("create the screenshot folder");
        Self {
            client,
            _driver: driver,
            _profile: profile,
            shots,
            taken: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    pub async fn goto(&self, url: &str) {
        within(self.client.goto(url), &format!("open {url}")).await;
    }

    /// The first element matching the CSS `selector`, waiting for it.
    pub async fn find(&self, selector: &str) -> Element {
        within(
            self.client
                .wait()
                .at_most(DEADLINE)
                .for_element(Locator::Css(selector)),
            &format!("find {selector}"),
        )
        .await
    }

    /// Clicks the first element matching `selector` and waits until the
    /// browser has left the current page.
    pub async fn click_and_wait(&self, selector: &str) {
        let before = self.url().await;
        let element = self.find(selector).await;
        within(element.click(), &format!("click {selector}")).await;
        eventually(&format!("a new page after clicking {selector}"), || async {
            (self.url().await != before).then_some(())
        })
        .await;
        within(
            self.client
                .wait()
                .at_most(DEADLINE)
                .for_element(Locator::Css("body")),
            "the new page's body",
        )
        .await;
    }

    /// Types `text` into the first element matching `selector`.
    pub async fn fill(&self, selector: &str, text: &str) {
        let element = self.find(selector).await;
        within(element.send_keys(text), &format!("type into {selector}")).await;
    }

    pub async fn url(&self) -> url::Url {
        within(self.client.current_url(), "read the URL").await
    }

    pub async fn text_of(&self, selector: &str) -> String {
        within(
            self.find(selector).await.text(),
            &format!("text of {selector}"),
        )
        .await
    }

    /// Saves the current page as `NN-<name>.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = within(self.client.screenshot(), "take a screenshot").await;
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let n = self
            .taken
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let path = self.shots.join(format!("{n:02}-{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }

    /// Ends the session (chromedriver stops when the browser drops).
    pub async fn close(self) {
        let _ = tokio::time::timeout(COMMAND_TIMEOUT, self.client.close()).await;
    }
}

/// Runs a WebDriver command with [`COMMAND_TIMEOUT`], failing the test
/// with `what` otherwise.
async fn within<T, E: std::fmt::Debug>(
    command: impl std::future::Future<Output = Result<T, E>>,
    what: &str,
) -> T {
    tokio::time::timeout(COMMAND_TIMEOUT, command)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {COMMAND_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{what}: {e:?}"))
}
