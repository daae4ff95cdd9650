//! A real browser for the pages people open from their email: Debian's
//! headless Chromium driven over WebDriver (chromedriver) with `fantoccini`.
//!
//! [`Browser::start`] runs a private chromedriver on a free port with a
//! fresh profile, and flags that let Chromium run as root in a container
//! without a sandbox, a GPU or any traffic of its own (updates, sync, QUIC).
//! Each page a test looks at can be saved as a PNG under
//! `target/tmp/browser/<test>/`, so a failure can be seen, not only read.
//! `scripts/services` installs `chromium` and `chromium-driver` when missing.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::{helpers::eventually, services::free_port};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a page may take to show what a test waits for.
const PAGE_DEADLINE: Duration = Duration::from_secs(20);

/// A headless Chromium session; the driver is killed when it drops.
pub struct Browser {
    client: Client,
    _driver: Child,
    _profile: tempfile::TempDir,
    screenshots: PathBuf,
    taken: usize,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("screenshots", &self.screenshots)
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts chromedriver and a browser session; screenshots of `test` go
    /// to [`Self::screenshots`].
    pub async fn start(test: &str) -> Self {
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver (scripts/services installs chromium-driver)");
        let profile = tempfile::tempdir().expect("a profile directory");
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--window-size=1000,800",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal");
        };
        let url = format!("http://127.0.0.1:{port}");
        let client = eventually("chromedriver to accept a session", || {
            let (url, capabilities) = (url.clone(), capabilities.clone());
            async move {
                // chromedriver speaks plain HTTP on the loopback: no TLS.
                ClientBuilder::new(HttpConnector::new())
                    .capabilities(capabilities)
                    .connect(&url)
                    .await
                    .ok()
            }
        })
        .await;
        let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("browser")
            .join(test);
        let _ = std::fs::remove_dir_all(&screenshots);
        std::fs::create_dir_all(&screenshots).expect("a screenshot directory");
        Self {
            client,
            _driver: driver,
            _profile: profile,
            screenshots,
            taken: 0,
        }
    }

    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("open the page");
    }

    /// The element matching `css`, once it is on the page.
    pub async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(PAGE_DEADLINE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
    }

    /// Waits until the page's text contains `text`, and returns the page.
    pub async fn wait_for_text(&self, text: &str) -> String {
        let deadline = tokio::time::Instant::now() + PAGE_DEADLINE;
        loop {
            let body = self
                .find("body")
                .await
                .text()
                .await
                .expect("the page's text");
            if body.contains(text) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the page never said {text:?}; it says {body:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves the page as `NN-name.png`; returns the file.
    pub async fn screenshot(&mut self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG image");
        self.taken += 1;
        let file = self
            .screenshots
            .join(format!("{:02}-{name}.png", self.taken));
        std::fs::write(&file, png).expect("write the screenshot");
        file
    }

    pub fn screenshots(&self) -> &Path {
        &self.screenshots
    }

    pub async fn close(self) {
        self.client.close().await.expect("end the browser session");
    }
}
