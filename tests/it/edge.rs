//! The edges a proxy, a scanner or an attacker reaches, caused for real with
//! raw sockets and real processes: connection caps, sockets that send
//! nothing, HTTP/2's bounds, the metrics listener, readiness, HSTS, insecure
//! links, `porter dev`'s address, and the handler deadline around a commit.

use std::{process::Stdio, time::Duration};

use futures::future::join_all;
use serde_json::json;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

use crate::{
    helpers::{DEADLINE, TestApp, TestOptions, eventually, new_user, spawn_app, spawn_app_with},
    services::{PrivateRedis, free_port},
};

/// What `app`'s API port is, as `host:port`.
fn api_address(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(api_address(app))
        .await
        .expect("connect to the API port")
}

/// Everything the server sends until it closes the connection; fails the
/// test when it is still open after `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut received = Vec::new();
    let read = async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .expect("the server closed the connection");
    received
}

/// A plain HTTP/1.1 request on a new connection; the status line's code.
async fn raw_status(app: &TestApp, request: &str) -> String {
    let mut stream = connect(app).await;
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut response = vec![0u8; 1024];
    let n = tokio::time::timeout(DEADLINE, stream.read(&mut response))
        .await
        .expect("an answer")
        .expect("read");
    String::from_utf8_lossy(&response[..n])
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_connection_beyond_max_connections_is_closed_at_once() {
    let app = spawn_app_with(
        TestOptions::default()
            .with("MAX_CONNECTIONS", "2")
            .with("CONNECTION_IDLE_TIMEOUT", "60s"),
    )
    .await;
    let first = connect(&app).await;
    let _second = connect(&app).await;
    let mut third = connect(&app).await;
    let received = read_until_closed(&mut third, Duration::from_secs(5)).await;
    assert!(received.is_empty(), "closed without an answer");

    drop(first);
    eventually("a slot to be free again", || async {
        (raw_status(
            &app,
            "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await
            == "200")
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn sockets_that_send_nothing_or_too_little_are_closed() {
    for http2 in ["false", "true"] {
        let app = spawn_app_with(
            TestOptions::default()
                .with("HTTP2", http2)
                .with("CONNECTION_IDLE_TIMEOUT", "1s"),
        )
        .await;
        // Nothing; fewer than the 24 bytes HTTP/2 detection waits for; half
        // a request head.
        for sent in ["", "PRI * HTTP/2.0\r\n", "GET /healthz HT"] {
            let mut stream = connect(&app).await;
            stream.write_all(sent.as_bytes()).await.expect("send");
            let received = read_until_closed(&mut stream, Duration::from_secs(10)).await;
            let answer = String::from_utf8_lossy(&received);
            assert!(
                received.is_empty() || answer.starts_with("HTTP/1.1 4"),
                "HTTP2={http2} {sent:?}: {answer}"
            );
        }
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = spawn_app_with(TestOptions::default().with("CONNECTION_IDLE_TIMEOUT", "1s")).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("send");
    let received = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(
        String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"),
        "answered, then closed once idle"
    );
}

/// The client connection preface and an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

struct Frame {
    kind: u8,
    flags: u8,
    payload: Vec<u8>,
}

async fn read_frame(stream: &mut TcpStream) -> Frame {
    let mut header = [0u8; 9];
    stream
        .read_exact(&mut header)
        .await
        .expect("a frame header");
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let mut payload = vec![0u8; length];
    stream
        .read_exact(&mut payload)
        .await
        .expect("a frame payload");
    Frame {
        kind: header[3],
        flags: header[4],
        payload,
    }
}

const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;

#[tokio::test]
async fn cleartext_http2_is_off_unless_asked_for() {
    let app = spawn_app().await;
    let mut stream = connect(&app).await;
    stream.write_all(H2_PREFACE).await.expect("send");
    let received = read_until_closed(&mut stream, Duration::from_secs(15)).await;
    assert!(
        received.is_empty() || received.starts_with(b"HTTP/1.1 "),
        "no HTTP/2 frames: {received:?}"
    );
}

#[tokio::test]
async fn http2_when_on_limits_streams_pings_and_ends_old_connections() {
    let app = spawn_app_with(
        TestOptions::default()
            .with("HTTP2", "true")
            .with("HTTP2_MAX_STREAMS", "7")
            .with("HTTP2_KEEP_ALIVE_INTERVAL", "300ms")
            .with("HTTP2_MAX_CONNECTION_AGE", "2s")
            .with("CONNECTION_IDLE_TIMEOUT", "60s"),
    )
    .await;
    let opened = std::time::Instant::now();
    let mut stream = connect(&app).await;
    stream.write_all(H2_PREFACE).await.expect("send");
    let settings = read_frame(&mut stream).await;
    assert_eq!(settings.kind, SETTINGS, "the server speaks HTTP/2");
    let max_streams = settings
        .payload
        .chunks(6)
        .find(|setting| setting[..2] == [0, 3])
        .map(|setting| u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]));
    assert_eq!(max_streams, Some(7), "SETTINGS_MAX_CONCURRENT_STREAMS");

    let (mut pinged, mut gone_away) = (false, None);
    let frames = async {
        while gone_away.is_none() {
            let frame = read_frame(&mut stream).await;
            match (frame.kind, frame.flags & ACK) {
                (PING, 0) => {
                    pinged = true;
                    // Answer, so only the connection's age can end it.
                    let mut pong = vec![0, 0, 8, PING, ACK, 0, 0, 0, 0];
                    pong.extend_from_slice(&frame.payload);
                    stream.write_all(&pong).await.expect("PING ACK");
                }
                (GOAWAY, _) => gone_away = Some(frame.payload),
                _ => {}
            }
        }
    };
    tokio::time::timeout(DEADLINE, frames)
        .await
        .expect("GOAWAY within the deadline");
    assert!(pinged, "keep-alive pings");
    let goaway = gone_away.expect("GOAWAY");
    assert_eq!(goaway[4..8], [0, 0, 0, 0], "NO_ERROR: a graceful goodbye");
    assert!(
        opened.elapsed() >= Duration::from_millis(1900),
        "not before the maximum age"
    );
}

#[tokio::test]
async fn metrics_are_served_only_on_their_own_listener_and_read_once_per_interval() {
    let app = spawn_app().await;
    assert_eq!(
        app.get("/metrics").await.status(),
        404,
        "not on the public port"
    );

    let started = std::time::Instant::now();
    let scrape = || {
        app.client
            .get(format!("{}/metrics", app.metrics_address))
            .send()
    };
    // At once (within the listener's 16 connections), then one by one.
    let scrapes = join_all((0..10).map(|_| scrape())).await;
    for response in scrapes {
        assert_eq!(response.expect("scraped").status(), 200);
    }
    for _ in 0..10 {
        assert_eq!(scrape().await.expect("scraped").status(), 200);
    }
    // One read, or one per interval begun if this machine is that slow.
    let intervals = started.elapsed().as_secs_f64()
        / porter::features::operations::gauges::REFRESH_INTERVAL.as_secs_f64();
    assert!(
        app.gauges.refreshes() <= 1 + intervals as u64,
        "20 scrapes, {} reads of Postgres and Redis",
        app.gauges.refreshes()
    );
    let trace = app
        .client
        .request(
            reqwest::Method::TRACE,
            format!("{}/metrics", app.metrics_address),
        )
        .send()
        .await
        .expect("answered");
    assert_eq!(trace.status(), 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_does_not_say_which_dependency_failed() {
    let mut redis = PrivateRedis::start().await;
    let app = spawn_app_with(TestOptions {
        redis_url: Some(redis.url()),
        run_worker: false,
        ..TestOptions::default()
    })
    .await;
    let ready = app.get("/readyz").await;
    assert_eq!(
        (ready.status(), ready.json()),
        (200, json!({ "status": "ready" }))
    );
    redis.stop().await;
    let not_ready = app.get("/readyz").await;
    assert_eq!(not_ready.status(), 503);
    assert_eq!(not_ready.json(), json!({ "status": "unavailable" }));
}

#[tokio::test]
async fn https_links_bring_hsts_and_http_ones_do_not() {
    let app = spawn_app().await;
    for response in [app.get("/healthz").await, app.sign_up(&new_user()).await] {
        assert_eq!(
            response.header("strict-transport-security"),
            "max-age=31536000"
        );
    }
    let local =
        spawn_app_with(TestOptions::default().with("PUBLIC_BASE_URL", "http://127.0.0.1:8080/"))
            .await;
    let response = local.get("/healthz").await;
    assert!(response.headers.get("strict-transport-security").is_none());
}

/// Runs `porter web` with `app`'s environment and `overrides`, and returns
/// its exit status and standard error once it exits by itself.
async fn run_porter_until_exit(
    app: &TestApp,
    overrides: &[(&str, &str)],
) -> (std::process::ExitStatus, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_porter"))
        .arg("web")
        .env_clear()
        .envs(&app.env)
        .envs(overrides.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(DEADLINE, output)
        .await
        .expect("porter exits")
        .expect("porter runs");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn http_links_for_a_public_host_stop_the_process_at_start() {
    let app = spawn_app_with(TestOptions {
        run_worker: false,
        ..TestOptions::default()
    })
    .await;
    let (status, stderr) =
        run_porter_until_exit(&app, &[("PUBLIC_BASE_URL", "http://porter.example")]).await;
    assert!(!status.success());
    assert!(
        stderr.contains("PUBLIC_BASE_URL") && stderr.contains("ALLOW_INSECURE_LINKS"),
        "{stderr}"
    );
}

/// The local addresses of the listening TCP sockets on `port`, from
/// `/proc/net/tcp` and `/proc/net/tcp6`, as the kernel's hex.
fn listening_addresses(port: u16) -> Vec<String> {
    let port = format!("{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let (address, socket_port) = fields.get(1)?.split_once(':')?;
                    (socket_port == port && fields.get(3) == Some(&"0A"))
                        .then(|| address.to_owned())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `porter <command>` with `app`'s environment on free ports (`PORT`,
/// `METRICS_PORT`) and `overrides`, once it answers on 127.0.0.1; with the
/// two ports.
async fn start_porter(
    app: &TestApp,
    command: &str,
    overrides: &[(&str, &str)],
) -> (tokio::process::Child, u16, u16) {
    let (port, metrics_port) = (free_port(), free_port());
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_porter"))
        .arg(command)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&app.env)
        .env("PORT", port.to_string())
        .env("METRICS_PORT", metrics_port.to_string())
        .env("RUST_LOG", "warn")
        .envs(overrides.iter().copied())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|error| panic!("start porter {command}: {error}"));
    let client = &app.client;
    eventually("porter to answer", || async {
        let health = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .ok()?;
        (health.status() == 200).then_some(())
    })
    .await;
    (child, port, metrics_port)
}

async fn stop(mut porter: tokio::process::Child) {
    porter.start_kill().expect("stop porter");
    porter.wait().await.expect("porter stopped");
}

/// The kernel's hex for 127.0.0.1 and 0.0.0.0 in `/proc/net/tcp`.
const LOOPBACK_HEX: &str = "0100007F";
const ANY_HEX: &str = "00000000";

#[tokio::test]
async fn porter_dev_listens_on_loopback_only() {
    let app = spawn_app_with(TestOptions {
        run_worker: false,
        ..TestOptions::default()
    })
    .await;
    let (dev, port, metrics_port) = start_porter(&app, "dev", &[]).await;
    for listening in [port, metrics_port] {
        assert_eq!(
            listening_addresses(listening),
            vec![LOOPBACK_HEX.to_owned()],
            "port {listening}: 127.0.0.1 only"
        );
    }
    stop(dev).await;
}

#[tokio::test]
async fn porter_web_serves_metrics_on_loopback_and_binds_where_told() {
    let app = spawn_app_with(TestOptions {
        run_worker: false,
        ..TestOptions::default()
    })
    .await;
    let (web, port, metrics_port) = start_porter(&app, "web", &[]).await;
    assert_eq!(
        listening_addresses(port),
        vec![ANY_HEX.to_owned()],
        "by default the API listens on every interface"
    );
    assert_eq!(
        listening_addresses(metrics_port),
        vec![LOOPBACK_HEX.to_owned()],
        "by default metrics listen on 127.0.0.1 only"
    );
    let scraped = app
        .client
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .expect("scraped");
    assert_eq!(scraped.status(), 200);
    stop(web).await;

    let (web, port, metrics_port) = start_porter(
        &app,
        "web",
        &[
            ("BIND_ADDRESS", "127.0.0.1"),
            ("METRICS_BIND_ADDRESS", "0.0.0.0"),
        ],
    )
    .await;
    assert_eq!(listening_addresses(port), vec![LOOPBACK_HEX.to_owned()]);
    assert_eq!(listening_addresses(metrics_port), vec![ANY_HEX.to_owned()]);
    stop(web).await;
}

#[tokio::test]
async fn one_client_cannot_hold_every_connection() {
    let app = spawn_app_with(
        TestOptions::default()
            .with("MAX_CONNECTIONS_PER_CLIENT", "3")
            .with("CONNECTION_IDLE_TIMEOUT", "60s"),
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(&app).await);
    }
    // A whole request, so a connection served (not closed at once) answers.
    let health = b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    let mut one_more = connect(&app).await;
    // Refused already, the write may fail; the read then sees the close.
    let _ = one_more.write_all(health).await;
    let received = read_until_closed(&mut one_more, DEADLINE).await;
    assert!(
        received.is_empty(),
        "closed without an answer: {}",
        String::from_utf8_lossy(&received)
    );

    // The whole of 127/8 is loopback: another client on the same machine.
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind("127.0.0.2:0".parse().expect("an address"))
        .expect("bind 127.0.0.2");
    let mut other_client = socket
        .connect(api_address(&app).parse().expect("an address"))
        .await
        .expect("connect from 127.0.0.2");
    other_client.write_all(health).await.expect("send");
    let answer = read_until_closed(&mut other_client, DEADLINE).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "another client is served: {}",
        String::from_utf8_lossy(&answer)
    );

    // A connection closed gives its client a slot back.
    drop(held.pop());
    eventually("127.0.0.1 to get a slot back", || async {
        let mut stream = connect(&app).await;
        stream.write_all(health).await.ok()?;
        let answer = read_until_closed(&mut stream, DEADLINE).await;
        answer.starts_with(b"HTTP/1.1 200").then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_trusted_proxy_is_not_capped_per_client() {
    let app = spawn_app_with(
        TestOptions::default()
            .with("MAX_CONNECTIONS_PER_CLIENT", "1")
            .with("TRUSTED_PROXIES", "127.0.0.1")
            .with("CONNECTION_IDLE_TIMEOUT", "60s"),
    )
    .await;
    let _held = connect(&app).await;
    let status = raw_status(
        &app,
        "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, "200", "every client arrives through the proxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_up_that_committed_is_answered_202_even_past_the_handler_deadline() {
    // The queue's Redis hangs, so the push after the commit takes its whole
    // 2 s timeout, twice the handler deadline; budgets live elsewhere.
    let queue_redis = PrivateRedis::start().await;
    let app = spawn_app_with(
        TestOptions {
            redis_url: Some(queue_redis.url()),
            run_worker: false,
            ..TestOptions::default()
        }
        .with("HANDLER_DEADLINE", "1s")
        .with(
            "RATE_LIMIT_REDIS_URL",
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        ),
    )
    .await;
    queue_redis.freeze();
    let started = std::time::Instant::now();
    let response = app.sign_up(&new_user()).await;
    let took = started.elapsed();
    queue_redis.thaw();
    assert_eq!(app.count_events("AccountRegistered").await, 1, "committed");
    assert!(
        took >= Duration::from_secs(1),
        "the deadline passed: {took:?}"
    );
    assert_eq!(response.status(), 202, "committed, so not a 503");

    // Before any commit (half a body, never finished), the deadline still
    // answers 503.
    let status = raw_status(
        &app,
        "POST /api/users HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: 100\r\n\r\n{",
    )
    .await;
    assert_eq!(status, "503");
}
