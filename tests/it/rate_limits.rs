//! Rate limits that hold: IPv6 clients budgeted by network, a global
//! sign-up budget, bounded Redis memory, a separate Redis for budgets, and
//! a per-process fallback when that Redis is gone.

use std::time::{Duration, Instant};

use futures::{StreamExt as _, stream};
use porter::platform::{
    config::Limit,
    rate_limit::{Budget, RateLimiter},
};

use crate::{
    helpers::{TestApp, TestOptions, TestResponse, new_user, spawn_app_with},
    services::PrivateRedis,
};

/// A sign-up that the trusted proxy (the test itself, on 127.0.0.1) says
/// comes from `client`.
async fn sign_up_from(app: &TestApp, client: &str) -> TestResponse {
    let request = app
        .client
        .post(app.url("/api/users"))
        .header("x-forwarded-for", client)
        .json(&new_user());
    app.send(request).await
}

#[tokio::test]
async fn ipv6_clients_are_budgeted_by_their_network() {
    let app = spawn_app_with(
        TestOptions::default()
            .with("TRUSTED_PROXIES", "127.0.0.1")
            .with("RATE_LIMIT_SIGN_UP_PER_IP", "1/1m"),
    )
    .await;
    assert_eq!(sign_up_from(&app, "2001:db8:1:2::1").await.status(), 202);
    assert_eq!(
        sign_up_from(&app, "2001:db8:1:2:ffff:ffff:ffff:fffe")
            .await
            .status(),
        429,
        "another address of the same /64"
    );
    assert_eq!(sign_up_from(&app, "2001:db8:1:3::1").await.status(), 202);
    assert_eq!(sign_up_from(&app, "198.51.100.1").await.status(), 202);
    assert_eq!(sign_up_from(&app, "198.51.100.2").await.status(), 202);
}

#[tokio::test]
async fn the_ipv6_prefix_length_is_configurable() {
    let app = spawn_app_with(
        TestOptions::default()
            .with("TRUSTED_PROXIES", "127.0.0.1")
            .with("RATE_LIMIT_SIGN_UP_PER_IP", "1/1m")
            .with("RATE_LIMIT_IPV6_PREFIX", "48"),
    )
    .await;
    assert_eq!(sign_up_from(&app, "2001:db8:1:2::1").await.status(), 202);
    assert_eq!(
        sign_up_from(&app, "2001:db8:1:3::1").await.status(),
        429,
        "the same /48"
    );
    assert_eq!(sign_up_from(&app, "2001:db8:2::1").await.status(), 202);
}

#[tokio::test]
async fn the_global_sign_up_budget_holds_whatever_the_client() {
    let app = spawn_app_with(
        TestOptions::default()
            .with("TRUSTED_PROXIES", "127.0.0.1")
            .with("RATE_LIMIT_SIGN_UP_GLOBAL", "3/1m"),
    )
    .await;
    for n in 1..=3 {
        let client = format!("198.51.100.{n}");
        assert_eq!(sign_up_from(&app, &client).await.status(), 202);
    }
    let refused = sign_up_from(&app, "203.0.113.9").await;
    assert_eq!(
        refused.status(),
        429,
        "a fresh client, but the site's budget is spent"
    );
    assert!(refused.header("retry-after").parse::<u64>().is_ok());
    assert_eq!(app.count_events("AccountRegistered").await, 3);
}

/// The keys a Redis holds under `pattern`.
async fn keys(url: &str, pattern: &str) -> Vec<String> {
    let client = redis::Client::open(url).expect("Redis URL");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut connection)
        .await
        .expect("KEYS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_live_in_their_own_redis_and_fall_back_to_the_process_when_it_is_gone() {
    let mut limits_redis = PrivateRedis::start().await;
    let app = spawn_app_with(
        TestOptions::default()
            .with("RATE_LIMIT_REDIS_URL", limits_redis.url())
            .with("RATE_LIMIT_SIGN_UP_PER_IP", "2/1m")
            .with("RATE_LIMIT_SIGN_UP_GLOBAL", "100/1h"),
    )
    .await;
    let namespace = &app.config.redis.namespace;
    assert_eq!(app.sign_up(&new_user()).await.status(), 202);
    assert_eq!(
        keys(&limits_redis.url(), &format!("{namespace}:rl:*"))
            .await
            .len(),
        2,
        "the per-client and the global budget, in the limits' Redis"
    );
    let shared = app.env["REDIS_URL"].clone();
    assert!(
        keys(&shared, &format!("{namespace}:rl:*")).await.is_empty(),
        "no budget in the Redis of queues and keys"
    );

    limits_redis.stop().await;
    // This process's own budget of 2 holds while the limits' Redis is gone;
    // sign-ups themselves need only Postgres and the queue's Redis.
    let started = Instant::now();
    assert_eq!(app.sign_up(&new_user()).await.status(), 202);
    assert_eq!(app.sign_up(&new_user()).await.status(), 202);
    let refused = app.sign_up(&new_user()).await;
    assert_eq!(
        refused.status(),
        429,
        "not admitted just because Redis is down"
    );
    assert!(refused.header("retry-after").parse::<u64>().is_ok());
    assert_eq!(app.count_events("AccountRegistered").await, 3);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a dead Redis is not asked on every request"
    );
}

/// One million distinct clients against a private Redis through the real
/// limiter: the memory their budgets take, from `INFO memory`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_clients_budgets_take_little_redis_memory() {
    const CLIENTS: u32 = 1_000_000;
    /// The bound asserted; the measured figure is printed.
    const MAX_BYTES_PER_CLIENT: u64 = 160;
    let redis = PrivateRedis::start().await;
    let client = redis::Client::open(redis.url()).expect("Redis URL");
    // However slow this machine, no call may time out: a failed call would
    // be admitted by the in-process fallback and write no key.
    let patient = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(600)))
        .set_connection_timeout(Some(Duration::from_secs(60)));
    let connection = redis::aio::ConnectionManager::new_with_config(client, patient)
        .await
        .expect("connect");
    let used_memory = || {
        let mut connection = connection.clone();
        async move {
            let info: String = redis::cmd("INFO")
                .arg("memory")
                .query_async(&mut connection)
                .await
                .expect("INFO");
            info.lines()
                .find_map(|line| line.strip_prefix("used_memory:"))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .expect("used_memory")
        }
    };
    let limiter = RateLimiter::new(connection.clone(), "porter", 64);
    // Keys live window / max = 48 min, longer than any run of this test.
    let limit = Limit {
        max: 30,
        window: Duration::from_secs(24 * 3600),
    };
    let before = used_memory().await;
    let admitted = stream::iter(0..CLIENTS)
        .map(|n| {
            let limiter = &limiter;
            async move {
                let ip = std::net::Ipv4Addr::from(0x0a00_0000 + n).to_string();
                limiter.admit(Budget::SignUpPerIp, limit, &ip).await.is_ok()
            }
        })
        .buffer_unordered(256)
        .filter(|admitted| std::future::ready(*admitted))
        .count()
        .await;
    assert_eq!(admitted, CLIENTS as usize);
    let keys: u64 = redis::cmd("DBSIZE")
        .query_async(&mut connection.clone())
        .await
        .expect("DBSIZE");
    assert_eq!(keys, u64::from(CLIENTS), "one key per client");
    let used = used_memory().await - before;
    let per_client = used / u64::from(CLIENTS);
    println!(
        "rate-limit budgets of {CLIENTS} clients: {:.1} MiB in Redis ({per_client} bytes each)",
        used as f64 / (1024.0 * 1024.0)
    );
    assert!(
        per_client <= MAX_BYTES_PER_CLIENT,
        "{per_client} bytes per client"
    );
}

/// A limiter on the shared Redis under a namespace of its own.
async fn limiter_on_redis(app: &TestApp) -> (RateLimiter, String) {
    let namespace = format!("{}-reserve", app.config.redis.namespace);
    (
        RateLimiter::new(app.redis.clone(), &namespace, 64),
        namespace,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_spends_up_front_in_redis_and_a_refund_gives_the_unit_back() {
    let app = spawn_app_with(TestOptions::default()).await;
    let (limiter, namespace) = limiter_on_redis(&app).await;
    let budget = Limit {
        max: 10,
        window: Duration::from_secs(3600),
    };
    let subject = "username:ada";

    // A concurrent burst: exactly the budget is reserved, whatever the order.
    let reservations: Vec<_> = futures::future::join_all(
        (0..40).map(|_| limiter.reserve(Budget::FailedSignInPerLogin, budget, subject)),
    )
    .await;
    let refused: Vec<_> = reservations
        .iter()
        .filter_map(|r| r.as_ref().err())
        .collect();
    assert_eq!(refused.len(), 30, "40 at once against a budget of 10");
    let mut reserved: Vec<_> = reservations.into_iter().filter_map(Result::ok).collect();

    // A refusal spent nothing: still one interval (6 min) away, not 30 more.
    let again = limiter
        .reserve(Budget::FailedSignInPerLogin, budget, subject)
        .await
        .expect_err("spent");
    assert!(
        again.retry_after <= Duration::from_secs(360),
        "{:?}",
        again.retry_after
    );

    // A refund gives exactly one unit back.
    reserved.pop().expect("a reservation").refund().await;
    let one_more = limiter
        .reserve(Budget::FailedSignInPerLogin, budget, subject)
        .await
        .expect("the refunded unit");
    assert!(
        limiter
            .reserve(Budget::FailedSignInPerLogin, budget, subject)
            .await
            .is_err(),
        "and only that one"
    );

    // Every unit back: the budget is whole, and its key is gone.
    one_more.refund().await;
    for reservation in reserved {
        reservation.refund().await;
    }
    assert!(
        keys(&app.env["REDIS_URL"], &format!("{namespace}:rl:*"))
            .await
            .is_empty(),
        "a whole budget keeps no key"
    );
    for _ in 0..10 {
        limiter
            .reserve(Budget::FailedSignInPerLogin, budget, subject)
            .await
            .expect("whole again")
            .keep();
    }
    assert!(
        limiter
            .reserve(Budget::FailedSignInPerLogin, budget, subject)
            .await
            .is_err(),
        "refunds never bank units beyond the burst"
    );
}
