//! `porter config`: the real binary, with an app's environment, prints
//! every setting's effective value and origin, secrets redacted.

use std::collections::HashMap;

use porter::platform::config::SECTIONS;

use crate::helpers::{DEADLINE, TestApp, TestOptions, spawn_app_with};

/// Runs `porter config` with `app`'s environment and `overrides`: its exit
/// status, standard output and standard error.
async fn porter_config(app: &TestApp, overrides: &[(&str, &str)]) -> (bool, String, String) {
    let output = app
        .porter(&["config"])
        .envs(overrides.iter().copied())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(DEADLINE, output)
        .await
        .expect("porter config exits")
        .expect("porter runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn porter_config_prints_each_setting_once_with_its_origin_and_secrets_redacted() {
    let app = spawn_app_with(TestOptions {
        run_worker: false,
        ..TestOptions::default()
    })
    .await;
    let (success, stdout, stderr) = porter_config(
        &app,
        &[
            ("DATABASE_URL", "postgres://porter:hunter2@127.0.0.1/porter"),
            ("SESSION_TTL", "12h"),
        ],
    )
    .await;
    assert!(success, "{stderr}");
    let secret_key = &app.env["SECRET_KEY"];
    assert!(
        !stdout.contains("hunter2") && !stdout.contains(secret_key.as_str()),
        "{stdout}"
    );
    // `VARIABLE  FROM  VALUE`, after a heading.
    let rows: HashMap<&str, (&str, &str)> = stdout
        .lines()
        .skip(1)
        .filter_map(|line| {
            let (name, rest) = line.split_once(' ')?;
            let rest = rest.trim_start();
            let (origin, value) = rest.split_once(' ').unwrap_or((rest, ""));
            Some((name, (origin, value.trim_start())))
        })
        .collect();
    let table: Vec<&str> = SECTIONS
        .iter()
        .flat_map(|section| section.settings)
        .map(|setting| setting.name)
        .collect();
    assert_eq!(stdout.lines().count(), 1 + table.len(), "{stdout}");
    for name in &table {
        assert!(rows.contains_key(name), "{name} missing from\n{stdout}");
    }
    assert_eq!(
        rows["DATABASE_URL"],
        ("env", "postgres://porter:***@127.0.0.1/porter")
    );
    assert_eq!(rows["SECRET_KEY"], ("env", "<redacted>"));
    assert_eq!(rows["SESSION_TTL"], ("env", "12h"));
    assert_eq!(rows["SESSION_IDLE"], ("default", "24h"));
    assert_eq!(
        rows["REDIS_NAMESPACE"],
        ("env", app.env["REDIS_NAMESPACE"].as_str())
    );
    assert_eq!(rows["RUST_LOG"].0, "env", "the helper sets it");
}

#[tokio::test]
async fn porter_config_stops_on_a_bad_value_as_porter_web_does() {
    let app = spawn_app_with(TestOptions {
        run_worker: false,
        ..TestOptions::default()
    })
    .await;
    let (success, stdout, stderr) = porter_config(&app, &[("SESSION_TTL", "soon")]).await;
    assert!(!success);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("porter: configuration error: SESSION_TTL: \"soon\" is not a duration"),
        "{stderr}"
    );
}
