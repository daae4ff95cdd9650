//! The web process: its listener, connections, proxies, password hashing
//! and sessions.

use std::{net::IpAddr, time::Duration};

use super::{
    ConfigError,
    settings::Env,
    values::{
        IpRange, parse_bool, parse_duration, parse_ip_address, parse_ip_ranges, parse_number,
        parse_positive,
    },
};

section! {
    WEB_SETTINGS = "Web process" {
        PORT: Value("8080"), Public,
            "HTTP port of `porter web` / `porter dev` (`porter dev` listens on 127.0.0.1 only, `web` on every interface, unless `BIND_ADDRESS` says otherwise)";
        BIND_ADDRESS: Value("0.0.0.0"), Public,
            "the interface `PORT` listens on (`127.0.0.1`, `::` for every IPv6 and IPv4 one, …); `porter dev` defaults it to `127.0.0.1`";
        MAX_CONNECTIONS: Value("1024"), Public,
            "open connections per web process; one more is closed at once";
        MAX_CONNECTIONS_PER_CLIENT: Value("64"), Public,
            "open connections per client (an IPv4 address, an IPv6 network of `RATE_LIMIT_IPV6_PREFIX`), so one client cannot hold every `MAX_CONNECTIONS` slot; one more is closed at once. Peers in `TRUSTED_PROXIES` are not capped (every client arrives through them): behind a proxy, cap per client there";
        CONNECTION_IDLE_TIMEOUT: Value("10s"), Public,
            "a connection with no request in progress is closed after this: one that sends nothing or only part of a request head (the first-byte timeout), and idle keep-alive connections";
        HTTP2: Value("false"), Public,
            "`true` serves cleartext HTTP/2 (prior knowledge) besides HTTP/1.1";
        HTTP2_MAX_STREAMS: Value("100"), Public,
            "concurrent streams per HTTP/2 connection, at most 10000";
        HTTP2_KEEP_ALIVE_INTERVAL: Value("20s"), Public,
            "an HTTP/2 connection silent this long is pinged, and closed if the ping is not answered within 20 s";
        HTTP2_MAX_CONNECTION_AGE: Value("10m"), Public,
            "an HTTP/2 connection this old is told to go away (GOAWAY) and drains";
        HANDLER_DEADLINE: Value("30s"), Public,
            "a request not answered by then gets `503`, unless it has begun committing events: then it is answered when they are (a sign-up that committed is never a `503`)";
        TRUSTED_PROXIES: None, Public,
            "comma-separated proxy addresses or CIDR ranges (`10.0.0.0/8, ::1`) whose `X-Forwarded-For` is believed; the header is walked from the right, and a hop that is not a bare IP address ends the walk (the client is then the address just right of it)";
    }
}

section! {
    HASHING_SETTINGS = "Password hashing" {
        HASH_CONCURRENCY: Computed("cores"), Public,
            "Argon2id hashes at once";
        HASH_QUEUE_LIMIT: Computed("32 × `HASH_CONCURRENCY`"), Public,
            "sign-ups hashing or waiting beyond this get `503`";
        HASH_MAX_WAIT: Computed("measured"), Public,
            "a sign-up that waited this long for a hashing thread gets `503`. Unset, `porter web` times one Argon2 hash at start and allows twice the time a full queue (`HASH_QUEUE_LIMIT`) takes to drain, at least 1 s: on a 2-core machine at 22 ms a hash, 32 rounds × 22 ms × 2 ≈ 1.4 s, so a burst of `HASH_QUEUE_LIMIT` sign-ups is accepted whole even while other work halves the hash rate; the value is logged at start. Set it to trade bigger bursts against slower overload answers";
        ARGON2_MEMORY_KIB: Value("19456"), Public,
            "Argon2id memory per hash; with `ARGON2_ITERATIONS` it must be at least one of OWASP's pairs in both memory and passes (`47104`/`1`, `19456`/`2`, `12288`/`3`, `9216`/`4`, `7168`/`5`), so never less than 7 MiB however many passes";
        ARGON2_ITERATIONS: Value("2"), Public,
            "Argon2id passes per hash (see `ARGON2_MEMORY_KIB`)";
    }
}

section! {
    SESSION_SETTINGS = "Sessions" {
        SESSION_TTL: Value("7d"), Public,
            "longest life of a session (`7d`, `12h`, …)";
        SESSION_IDLE: Value("24h"), Public,
            "a session unused this long ends";
        SESSIONS_PER_ACCOUNT: Value("50"), Public,
            "live sessions one account may hold; a sign-in beyond them ends the account's oldest session. Far above one person's browsers and devices over a `SESSION_TTL`, and it bounds what one account costs Redis (its index, and \"sign out everywhere\" or a password change, which end each session)";
    }
}

/// The web process: its ports, connections, proxies and password hashing.
#[derive(Debug, Clone)]
pub struct WebConfig {
    pub port: u16,
    /// The interface `PORT` listens on (`BIND_ADDRESS`); every one unless set.
    pub bind_address: IpAddr,
    pub connections: ConnectionLimits,
    /// Connections one client (an IPv4 address, an IPv6 network of
    /// `RATE_LIMIT_IPV6_PREFIX`) may hold at once; `TRUSTED_PROXIES` are not
    /// capped. Keeps one client from holding every `MAX_CONNECTIONS` slot.
    pub max_connections_per_client: usize,
    /// A request not answered by then gets `503`, unless its events are
    /// being committed (then it is answered when they are).
    pub handler_deadline: Duration,
    /// The proxies whose `X-Forwarded-For` is believed, as addresses or
    /// CIDR ranges.
    pub trusted_proxies: Vec<IpRange>,
    pub hashing: HashingConfig,
    pub sessions: SessionConfig,
}

/// `SESSION_TTL`, `SESSION_IDLE`: a session ends at the first of the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Longest life of a session from sign-in, however busy.
    pub ttl: Duration,
    /// A session unused this long ends.
    pub idle: Duration,
    /// `SESSIONS_PER_ACCOUNT`: a sign-in beyond this many live sessions
    /// ends the account's oldest.
    pub per_account: usize,
}

/// What one HTTP listener allows its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once; one more is closed at once.
    pub max_connections: usize,
    /// A connection with no request in progress (including one that has
    /// sent nothing yet) is closed after this long.
    pub idle_timeout: Duration,
    /// Cleartext HTTP/2 (prior knowledge), off unless `HTTP2=true`.
    pub http2: Option<Http2Limits>,
}

impl ConnectionLimits {
    /// A metrics listener: a scraper or two, HTTP/1 only.
    pub const METRICS: Self = Self {
        max_connections: 16,
        idle_timeout: Duration::from_secs(10),
        http2: None,
    };
}

/// HTTP/2's own bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Limits {
    /// Concurrent streams per connection.
    pub max_streams: u32,
    /// A PING goes out after this long without frames; no answer within
    /// 20 s closes the connection.
    pub keep_alive_interval: Duration,
    /// After this long the connection is told to go away (GOAWAY) and
    /// drains, so a client cannot hold one connection for ever.
    pub max_connection_age: Duration,
}

/// Argon2id on bounded threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashingConfig {
    /// How many hashing threads run (CPU-bound, one hash each at a time).
    pub concurrency: usize,
    /// Sign-ups waiting for a hashing thread beyond this many are shed with
    /// `503` rather than queued.
    pub queue_limit: usize,
    pub argon2: Argon2Cost,
    /// A sign-up that waited this long for a hashing thread is answered
    /// `503` rather than hashed late. `None` (unset): derived at start from
    /// the hash rate measured there (`hashing::default_max_wait`).
    pub max_wait: Option<Duration>,
}

/// Argon2id cost. The default is OWASP's m=19456 KiB, t=2; OWASP lists
/// equivalent pairs that trade memory for passes (m=9216 t=4, m=7168 t=5),
/// which a memory-tight deployment may choose. A cost is accepted only when
/// it is at least one of OWASP's pairs in both memory and passes, so memory
/// is bounded from below too: many passes over a little memory are cheap
/// on a GPU, which is what Argon2's memory is there to prevent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Cost {
    pub memory_kib: u32,
    pub iterations: u32,
}

impl Argon2Cost {
    /// OWASP's first recommendation, and Porter's default.
    pub const OWASP_DEFAULT: Self = Self {
        memory_kib: 19_456,
        iterations: 2,
    };
    /// OWASP's Password Storage Cheat Sheet, Argon2id: (KiB, passes).
    const OWASP_PAIRS: [(u32, u32); 5] = [
        (47_104, 1),
        (19_456, 2),
        (12_288, 3),
        (9_216, 4),
        (7_168, 5),
    ];
}

impl Http2Limits {
    /// `None` unless `HTTP2=true`; its bounds are checked either way, so a
    /// bad one is found before the day HTTP/2 is turned on.
    fn read(env: &Env<'_>) -> Result<Option<Self>, ConfigError> {
        let on = env.setting(&HTTP2, parse_bool)?;
        let limits = Self {
            max_streams: env.setting(&HTTP2_MAX_STREAMS, |raw| {
                parse_positive(raw).map(|n| n.min(10_000) as u32)
            })?,
            keep_alive_interval: env.setting(&HTTP2_KEEP_ALIVE_INTERVAL, parse_duration)?,
            max_connection_age: env.setting(&HTTP2_MAX_CONNECTION_AGE, parse_duration)?,
        };
        Ok(on.then_some(limits))
    }
}

impl WebConfig {
    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        let cores = || std::thread::available_parallelism().map_or(1, |n| n.get());
        let concurrency = env.computed(&HASH_CONCURRENCY, parse_positive, cores)?;
        Ok(Self {
            port: env.setting(&PORT, parse_number)?,
            bind_address: env.setting(&BIND_ADDRESS, parse_ip_address)?,
            max_connections_per_client: env.setting(&MAX_CONNECTIONS_PER_CLIENT, parse_positive)?,
            connections: ConnectionLimits {
                max_connections: env.setting(&MAX_CONNECTIONS, parse_positive)?,
                idle_timeout: env.setting(&CONNECTION_IDLE_TIMEOUT, parse_duration)?,
                http2: Http2Limits::read(env)?,
            },
            handler_deadline: env.setting(&HANDLER_DEADLINE, parse_duration)?,
            trusted_proxies: env
                .optional(&TRUSTED_PROXIES, parse_ip_ranges)?
                .unwrap_or_default(),
            hashing: HashingConfig {
                concurrency,
                queue_limit: env
                    .computed(&HASH_QUEUE_LIMIT, parse_positive, || concurrency * 32)?,
                argon2: check_argon2_cost(
                    env.setting(&ARGON2_MEMORY_KIB, parse_number)?,
                    env.setting(&ARGON2_ITERATIONS, parse_number)?,
                )?,
                max_wait: env.optional(&HASH_MAX_WAIT, parse_duration)?,
            },
            sessions: SessionConfig {
                ttl: env.setting(&SESSION_TTL, parse_duration)?,
                idle: env.setting(&SESSION_IDLE, parse_duration)?,
                per_account: env.setting(&SESSIONS_PER_ACCOUNT, parse_positive)?,
            },
        })
    }
}

fn check_argon2_cost(memory_kib: u32, iterations: u32) -> Result<Argon2Cost, ConfigError> {
    let meets_a_pair = Argon2Cost::OWASP_PAIRS
        .iter()
        .any(|&(m, t)| memory_kib >= m && iterations >= t);
    if !meets_a_pair {
        return Err(ConfigError {
            variable: ARGON2_MEMORY_KIB.name,
            problem: format!(
                "{memory_kib} KiB × {iterations} passes is below every OWASP pair for Argon2id \
                 (at least one of 47104 × 1, 19456 × 2, 12288 × 3, 9216 × 4, 7168 × 5 in both)"
            ),
        });
    }
    Ok(Argon2Cost {
        memory_kib,
        iterations,
    })
}
