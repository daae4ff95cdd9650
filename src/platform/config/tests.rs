//! The configuration rules, through `Config::from_lookup` and the parsers.

use std::{collections::HashMap, net::IpAddr, time::Duration};

use super::{
    mail_settings::parse_public_base_url,
    values::{parse_duration, parse_ip_ranges, parse_limit},
    *,
};

fn complete() -> HashMap<&'static str, String> {
    HashMap::from([
        ("DATABASE_URL", "postgres://u@127.0.0.1/p".to_owned()),
        ("REDIS_URL", "redis://127.0.0.1:6379".to_owned()),
        ("PUBLIC_BASE_URL", "https://porter.example".to_owned()),
        ("SMTP_URL", "smtp://127.0.0.1:2525".to_owned()),
        ("MAIL_FROM", "Porter <no-reply@porter.example>".to_owned()),
        ("SECRET_KEY", "k".repeat(SecretKey::MIN_LEN)),
    ])
}

fn load(vars: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
    Config::from_lookup(|name| vars.get(name).cloned())
}

#[test]
fn the_renamed_failed_sign_in_budget_is_refused_under_its_old_name() {
    let mut vars = complete();
    vars.insert("RATE_LIMIT_FAILED_SIGN_IN_PER_ACCOUNT", "5/1m".to_owned());
    let error = load(&vars).expect_err("the old name is refused");
    assert_eq!(error.variable, "RATE_LIMIT_FAILED_SIGN_IN_PER_ACCOUNT");
    assert!(
        error
            .problem
            .contains("RATE_LIMIT_FAILED_SIGN_IN_PER_LOGIN")
    );
    vars.remove("RATE_LIMIT_FAILED_SIGN_IN_PER_ACCOUNT");
    vars.insert("RATE_LIMIT_FAILED_SIGN_IN_PER_LOGIN", "5/1m".to_owned());
    let config = load(&vars).expect("the new name loads");
    assert_eq!(config.limits.failed_sign_in_per_login, Limit::per(5, 60));
}

#[test]
fn defaults_apply_when_optional_variables_are_unset() {
    let config = load(&complete()).expect("complete configuration loads");
    assert_eq!(config.web.port, 8080);
    assert_eq!(config.web.bind_address.to_string(), "0.0.0.0");
    assert_eq!(config.metrics_bind_address.to_string(), "127.0.0.1");
    assert_eq!(config.web.max_connections_per_client, 64);
    assert_eq!(config.mail.activation_ttl, Duration::from_secs(900));
    assert_eq!(config.mail.reset_ttl, Duration::from_secs(1800));
    assert_eq!(config.web.sessions.ttl, Duration::from_secs(7 * 86_400));
    assert_eq!(config.web.sessions.idle, Duration::from_secs(86_400));
    assert_eq!(config.web.sessions.per_account, 50);
    assert_eq!(config.limits.sign_in_per_account, Limit::per(20, 900));
    assert_eq!(config.limits.sign_in_per_ip, Limit::per(100, 900));
    assert_eq!(config.redis.namespace, "porter");
    assert_eq!(
        config.mail.public_base_url.as_str(),
        "https://porter.example/"
    );
    assert_eq!(config.log_format, LogFormat::Text);
    assert_eq!(
        config.web.hashing.max_wait, None,
        "measured at start unless set"
    );
    assert_eq!(
        config.worker.dead_letter_retention,
        Duration::from_secs(30 * 86_400)
    );
}

#[test]
fn passwords_in_urls_never_show_in_debug_output() {
    let mut vars = complete();
    vars.insert("DATABASE_URL", "postgres://porter:hunter2@db/porter".into());
    vars.insert("REDIS_URL", "redis://:sesame@cache:6379".into());
    vars.insert("SMTP_URL", "smtp://mailer:opensesame@smtp:587".into());
    let config = load(&vars).expect("loads");
    let printed = format!("{config:?} {}", config.database.url);
    for secret in ["hunter2", "sesame", "opensesame"] {
        assert!(!printed.contains(secret), "{printed}");
    }
    assert!(
        printed.contains("postgres://porter:***@db/porter"),
        "{printed}"
    );
    assert_eq!(
        config.database.url.expose(),
        "postgres://porter:hunter2@db/porter"
    );
}

#[test]
fn the_secret_key_is_required_long_enough_never_printed_and_derives_one_key_per_purpose() {
    let mut vars = complete();
    vars.remove("SECRET_KEY");
    let error = load(&vars).expect_err("required");
    assert_eq!(
        error.to_string(),
        "configuration error: SECRET_KEY: is not set"
    );
    vars.insert("SECRET_KEY", "short".into());
    let error = load(&vars).expect_err("too short");
    assert!(
        error
            .to_string()
            .starts_with("configuration error: SECRET_KEY: must be at least 32"),
        "{error}"
    );
    let secret = "s3cret-".repeat(8);
    vars.insert("SECRET_KEY", secret.clone());
    let config = load(&vars).expect("loads");
    assert!(!format!("{config:?}").contains(&secret));
    let key = &config.secret_key;
    assert_ne!(key.derive("client-ip"), key.derive("device"));
    assert_eq!(key.derive("client-ip"), key.derive("client-ip"));
    let other: SecretKey = SecretKey::generate()
        .expect("the OS generator works")
        .parse()
        .expect("a generated key is valid");
    assert_ne!(other.derive("client-ip"), key.derive("client-ip"));
}

#[test]
fn each_missing_required_variable_is_named() {
    for name in [
        "DATABASE_URL",
        "REDIS_URL",
        "PUBLIC_BASE_URL",
        "SMTP_URL",
        "MAIL_FROM",
    ] {
        let mut vars = complete();
        vars.remove(name);
        let error = load(&vars).expect_err("missing variable is an error");
        assert_eq!(error.variable, name);
        assert_eq!(
            error.to_string(),
            format!("configuration error: {name}: is not set")
        );
    }
}

#[test]
fn malformed_values_are_rejected_with_the_variable_named() {
    let cases = [
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("PUBLIC_BASE_URL", "ftp://x.example"),
        ("PUBLIC_BASE_URL", "https://x.example/?next=evil"),
        ("SMTP_URL", "http://mail.example"),
        ("MAIL_FROM", "not a mailbox"),
        ("ACTIVATION_TTL", "soon"),
        ("ACTIVATION_TTL", "0"),
        ("ACTIVATION_TTL", "25h"),
        ("ACTIVATION_TTL", "86401"),
        ("PUBLIC_BASE_URL", "http://porter.example"),
        ("PUBLIC_BASE_URL", "http://10.0.0.1:8080"),
        ("HTTP2", "yes"),
        ("HTTP2_MAX_STREAMS", "0"),
        ("MAX_CONNECTIONS", "0"),
        ("MAX_CONNECTIONS_PER_CLIENT", "0"),
        ("BIND_ADDRESS", "localhost"),
        ("METRICS_BIND_ADDRESS", "127.0.0.1:9090"),
        ("ALLOW_INSECURE_LINKS", "maybe"),
        ("WORKER_CONCURRENCY", "0"),
        ("TRUSTED_PROXIES", "10.0.0.1,nonsense"),
        ("TRUSTED_PROXIES", "10.0.0.0/33"),
        ("TRUSTED_PROXIES", "10.0.0.0/+8"),
        ("LOG_FORMAT", "xml"),
        ("REDIS_NAMESPACE", "a b"),
        ("RATE_LIMIT_SIGN_UP_PER_IP", "30"),
        ("RATE_LIMIT_RESEND_PER_EMAIL", "0/1h"),
        ("RATE_LIMIT_SIGN_UP_GLOBAL", "many/1m"),
        ("RATE_LIMIT_IPV6_PREFIX", "0"),
        ("RATE_LIMIT_IPV6_PREFIX", "129"),
        ("RATE_LIMIT_REDIS_URL", "http://cache"),
        ("DEFAULT_LOCALE", "en_US"),
        ("PRODUCT_NAME", "Acme\r\nBcc: x@example.com"),
        ("SUPPORT_URL", "javascript:alert(1)"),
        ("SUPPORT_EMAIL", "help desk"),
    ];
    for (name, value) in cases {
        let mut vars = complete();
        vars.insert(name, value.to_owned());
        let error = load(&vars).expect_err(value);
        assert_eq!(error.variable, name, "{value}");
    }
}

#[test]
fn http_links_are_for_localhost_unless_allowed() {
    for local in [
        "http://localhost:8080",
        "http://127.0.0.1:8080",
        "http://[::1]:8080",
        "http://porter.localhost",
    ] {
        let mut vars = complete();
        vars.insert("PUBLIC_BASE_URL", local.into());
        assert!(load(&vars).is_ok(), "{local}");
    }
    let mut vars = complete();
    vars.insert("PUBLIC_BASE_URL", "http://porter.example".into());
    let error = load(&vars).expect_err("http for a public host");
    assert!(
        error.to_string().contains("ALLOW_INSECURE_LINKS"),
        "{error}"
    );
    vars.insert("ALLOW_INSECURE_LINKS", "true".into());
    assert!(load(&vars).is_ok(), "the operator allowed it");
}

#[test]
fn activation_keys_live_at_most_a_day() {
    let mut vars = complete();
    vars.insert("ACTIVATION_TTL", "24h".into());
    assert_eq!(
        load(&vars).expect("a day").mail.activation_ttl,
        Duration::from_secs(86_400)
    );
}

#[test]
fn templates_default_to_english_porter_without_support_links() {
    let config = load(&complete()).expect("complete");
    assert_eq!(config.templates.default_locale.as_str(), "en");
    assert_eq!(config.templates.dir, None);
    assert_eq!(config.templates.brand.product_name, "Porter");
    assert_eq!(config.templates.brand.support_url, None);
    let mut vars = complete();
    vars.insert("DEFAULT_LOCALE", "DE-ch".into());
    vars.insert("SUPPORT_EMAIL", "help@acme.example".into());
    let config = load(&vars).expect("valid");
    assert_eq!(config.templates.default_locale.as_str(), "de-CH");
    assert_eq!(
        config.templates.brand.support_email.as_deref(),
        Some("help@acme.example")
    );
}

#[test]
fn http2_is_off_unless_asked_for_and_then_bounded() {
    assert_eq!(
        load(&complete()).expect("loads").web.connections.http2,
        None
    );
    let mut vars = complete();
    vars.insert("HTTP2", "true".into());
    let http2 = load(&vars)
        .expect("loads")
        .web
        .connections
        .http2
        .expect("on");
    assert_eq!(http2.max_streams, 100);
    assert_eq!(http2.max_connection_age, Duration::from_secs(600));
}

#[test]
fn durations_accept_units() {
    assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
}

#[test]
fn argon2_cost_defaults_to_owasp_and_refuses_weaker() {
    assert_eq!(
        load(&complete()).expect("loads").web.hashing.argon2,
        Argon2Cost {
            memory_kib: 19_456,
            iterations: 2
        }
    );
    assert_eq!(
        load(&complete()).expect("loads").web.hashing.argon2,
        Argon2Cost::OWASP_DEFAULT,
        "the table's defaults are the cost the hasher's tests use"
    );
    let mut vars = complete();
    vars.insert("ARGON2_MEMORY_KIB", "9216".into());
    vars.insert("ARGON2_ITERATIONS", "4".into());
    assert_eq!(
        load(&vars)
            .expect("an OWASP pair")
            .web
            .hashing
            .argon2
            .memory_kib,
        9216
    );
    vars.insert("ARGON2_ITERATIONS", "1".into());
    assert_eq!(
        load(&vars).expect_err("too cheap").variable,
        "ARGON2_MEMORY_KIB"
    );
    // Passes do not make up for memory: m × t is huge, m is 8 KiB.
    vars.insert("ARGON2_MEMORY_KIB", "8".into());
    vars.insert("ARGON2_ITERATIONS", "100000".into());
    assert_eq!(
        load(&vars).expect_err("too little memory").variable,
        "ARGON2_MEMORY_KIB"
    );
    vars.insert("ARGON2_MEMORY_KIB", "7167".into());
    vars.insert("ARGON2_ITERATIONS", "50".into());
    assert!(load(&vars).is_err(), "below OWASP's least memory");
    vars.insert("ARGON2_MEMORY_KIB", "12288".into());
    vars.insert("ARGON2_ITERATIONS", "3".into());
    assert!(load(&vars).is_ok(), "an OWASP pair");
}

#[test]
fn limits_read_as_count_per_window() {
    assert_eq!(parse_limit("30/5m"), Ok(Limit::per(30, 300)));
    assert_eq!(parse_limit("3/1h"), Ok(Limit::per(3, 3600)));
}

#[test]
fn trusted_proxies_accept_addresses_and_cidr_ranges() {
    let ranges = parse_ip_ranges("10.0.0.0/8, ::1, fd00::/8").expect("valid");
    let trusted = |ip: &str| {
        let ip: IpAddr = ip.parse().expect("ip");
        ranges.iter().any(|range| range.contains(ip))
    };
    assert!(trusted("10.255.0.1"));
    assert!(trusted("::1"));
    assert!(trusted("fd12::7"));
    assert!(!trusted("11.0.0.1"));
    assert!(!trusted("::2"));
    assert!(!trusted("::ffff:10.0.0.1"));
    let everything: IpRange = "0.0.0.0/0".parse().expect("valid");
    assert!(everything.contains("203.0.113.1".parse().expect("ip")));
}

#[test]
fn base_url_keeps_its_path_prefix() {
    let url = parse_public_base_url("https://x.example/porter").expect("valid");
    assert_eq!(
        url.join("activate/k").expect("join").as_str(),
        "https://x.example/porter/activate/k"
    );
}

/// Every setting's name, from the table.
fn table_names() -> Vec<&'static str> {
    SECTIONS
        .iter()
        .flat_map(|section| section.settings)
        .map(|setting| setting.name)
        .collect()
}

#[test]
fn the_readers_read_every_row_of_the_table_and_nothing_else() {
    let vars = complete();
    let effective = Config::effective(&|name| vars.get(name).cloned()).expect("loads");
    let read: Vec<_> = effective.iter().map(|setting| setting.name).collect();
    let table = table_names();
    let unread: Vec<_> = table.iter().filter(|name| !read.contains(name)).collect();
    let unlisted: Vec<_> = read.iter().filter(|name| !table.contains(name)).collect();
    assert!(
        unread.is_empty() && unlisted.is_empty(),
        "rows no reader reads: {unread:?}; read but not rows: {unlisted:?}"
    );
    let once = |names: &[&str]| names.iter().collect::<std::collections::HashSet<_>>().len();
    assert_eq!(once(&table), table.len(), "a variable has two rows");
    assert_eq!(once(&read), read.len(), "a variable is read twice");
}

#[test]
fn docs_configuration_md_is_generated_from_the_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
    let written = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        written == reference(),
        "docs/configuration.md differs from the table of settings in src/platform/config/; \
         regenerate it with `cargo run -q -- config --reference > docs/configuration.md`"
    );
}

#[test]
fn every_default_value_in_the_table_is_what_the_readers_use() {
    let vars = complete();
    let effective = Config::effective(&|name| vars.get(name).cloned()).expect("loads");
    for section in SECTIONS {
        for setting in section.settings {
            let read = effective
                .iter()
                .find(|read| read.name == setting.name)
                .expect("every row is read");
            match setting.default {
                Unset::Value(text) if !vars.contains_key(setting.name) => {
                    assert_eq!(read.origin, Origin::Default, "{}", setting.name);
                    assert_eq!(read.value, text, "{}", setting.name);
                }
                Unset::Required => {
                    assert_eq!(read.origin, Origin::Environment, "{}", setting.name);
                }
                _ => {}
            }
        }
    }
}

#[test]
fn effective_settings_say_where_each_came_from_and_mask_secrets() {
    let mut vars = complete();
    vars.insert("DATABASE_URL", "postgres://porter:hunter2@db/porter".into());
    vars.insert("SECRET_KEY", "s3cret-".repeat(8));
    vars.insert("SESSION_TTL", " 12h ".into());
    let effective = Config::effective(&|name| vars.get(name).cloned()).expect("loads");
    let of = |name: &str| {
        effective
            .iter()
            .find(|setting| setting.name == name)
            .map(|setting| (setting.value.as_str(), setting.origin))
            .expect(name)
    };
    assert_eq!(
        of("DATABASE_URL"),
        ("postgres://porter:***@db/porter", Origin::Environment)
    );
    assert_eq!(of("SECRET_KEY"), ("<redacted>", Origin::Environment));
    assert_eq!(of("SESSION_TTL"), ("12h", Origin::Environment));
    assert_eq!(of("SESSION_IDLE"), ("24h", Origin::Default));
    assert_eq!(
        of("RATE_LIMIT_REDIS_URL"),
        ("redis://127.0.0.1:6379", Origin::Default),
        "a computed default shows the value computed"
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(
        of("HASH_QUEUE_LIMIT"),
        (format!("{}", cores * 32).as_str(), Origin::Default)
    );
    assert_eq!(of("HASH_MAX_WAIT"), ("measured", Origin::Default));
    assert_eq!(
        of("MIGRATION_DATABASE_URL"),
        ("DATABASE_URL", Origin::Default),
        "a default worked out later says how"
    );
    assert_eq!(of("TRUSTED_PROXIES"), ("(unset)", Origin::Default));
    let printed = render_effective(&effective);
    assert!(
        !printed.contains("hunter2") && !printed.contains("s3cret"),
        "{printed}"
    );
    assert_eq!(
        effective.iter().map(|s| s.name).collect::<Vec<_>>()[..3],
        ["DATABASE_URL", "MIGRATION_DATABASE_URL", "REDIS_URL"],
        "in the table's order"
    );
}
