//! The request budgets, each `count/window`; what each gives an attacker is
//! in docs/security.md.

use super::{
    ConfigError,
    settings::Env,
    values::{Limit, parse_ipv6_prefix, parse_limit},
};

section! {
    LIMIT_SETTINGS = "Rate limits" {
        RATE_LIMIT_SIGN_UP_PER_IP: Value("30/5m"), Public,
            "sign-ups per client IP";
        RATE_LIMIT_SIGN_UP_GLOBAL: Value("1000/1m"), Public,
            "sign-ups from all clients together, on top of the per-IP budget";
        RATE_LIMIT_RESEND_PER_IP: Value("30/5m"), Public,
            "resends per client IP";
        RATE_LIMIT_RESEND_PER_EMAIL: Value("3/1h"), Public,
            "resends per address";
        RATE_LIMIT_FAILED_ACTIVATION_PER_IP: Value("10/1m"), Public,
            "failed uses of an emailed link (activation or reset) and wrong passwords of contested activations per client IP; a live activation or reset key is never refused because of them";
        RATE_LIMIT_FAILED_SIGN_IN_PER_LOGIN: Value("10/15m"), Public,
            "wrong passwords per login as typed (canonical form, whether or not an account holds it; a username and an email are two logins), or per device for a sign-in carrying that account's `device_token`, and per account at password change; over it, `429` before any hash, even for the right password (see [Security](security.md#what-each-budget-gives-an-attacker)). Formerly `RATE_LIMIT_FAILED_SIGN_IN_PER_ACCOUNT`, which is now refused at start";
        RATE_LIMIT_FAILED_SIGN_IN_PER_IP: Value("100/15m"), Public,
            "wrong passwords per client IP";
        RATE_LIMIT_SIGN_IN_PER_ACCOUNT: Value("20/15m"), Public,
            "successful sign-ins (new sessions) per account; checked before any hash like the failure budgets, spent only by a right password. Someone holding the password gets 20 sessions at once, then one every 45 s (80 an hour), and never more than `SESSIONS_PER_ACCOUNT` live";
        RATE_LIMIT_SIGN_IN_PER_IP: Value("100/15m"), Public,
            "successful sign-ins per client IP, across accounts: 100 at once, then one every 9 s (400 an hour) from one address or IPv6 network; raise it when many people share one (a large office behind one NAT)";
        RATE_LIMIT_RESET_PER_IP: Value("30/5m"), Public,
            "password reset requests per client IP";
        RATE_LIMIT_RESET_PER_EMAIL: Value("3/1h"), Public,
            "password reset requests per address";
        RATE_LIMIT_FAILED_ADMIN_AUTH_PER_IP: Value("10/1m"), Public,
            "admin API requests without a live API key per client IP (`429` instead of `401` past it); a live key is never refused because of them";
        RATE_LIMIT_IPV6_PREFIX: Value("64"), Public,
            "an IPv6 client is budgeted by its network of this prefix length (1–128), since one holder usually has the whole /64";
    }
}

/// The request budgets, shared by every web process through Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub sign_up_per_ip: Limit,
    /// All sign-ups together, whatever their source.
    pub sign_up_global: Limit,
    pub resend_per_ip: Limit,
    pub resend_per_email: Limit,
    pub failed_activation_per_ip: Limit,
    /// Admin API requests without a valid API key.
    pub failed_admin_auth_per_ip: Limit,
    /// IPv6 clients are budgeted by their network of this prefix length.
    pub ipv6_prefix: u8,
    /// Wrong passwords per login as typed (canonical form), per device
    /// token, and at password change per account.
    pub failed_sign_in_per_login: Limit,
    pub failed_sign_in_per_ip: Limit,
    /// Successful sign-ins per account: each one is a session.
    pub sign_in_per_account: Limit,
    pub sign_in_per_ip: Limit,
    pub reset_per_ip: Limit,
    pub reset_per_email: Limit,
}

impl RateLimits {
    pub(super) fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        // Renamed when failures became counted per login text: a deployment
        // still setting the old name must not fall back to the default
        // without a word.
        env.refuse_renamed(
            "RATE_LIMIT_FAILED_SIGN_IN_PER_ACCOUNT",
            &RATE_LIMIT_FAILED_SIGN_IN_PER_LOGIN,
        )?;
        Ok(Self {
            sign_up_per_ip: env.setting(&RATE_LIMIT_SIGN_UP_PER_IP, parse_limit)?,
            sign_up_global: env.setting(&RATE_LIMIT_SIGN_UP_GLOBAL, parse_limit)?,
            resend_per_ip: env.setting(&RATE_LIMIT_RESEND_PER_IP, parse_limit)?,
            resend_per_email: env.setting(&RATE_LIMIT_RESEND_PER_EMAIL, parse_limit)?,
            failed_activation_per_ip: env
                .setting(&RATE_LIMIT_FAILED_ACTIVATION_PER_IP, parse_limit)?,
            failed_admin_auth_per_ip: env
                .setting(&RATE_LIMIT_FAILED_ADMIN_AUTH_PER_IP, parse_limit)?,
            ipv6_prefix: env.setting(&RATE_LIMIT_IPV6_PREFIX, parse_ipv6_prefix)?,
            failed_sign_in_per_login: env
                .setting(&RATE_LIMIT_FAILED_SIGN_IN_PER_LOGIN, parse_limit)?,
            failed_sign_in_per_ip: env.setting(&RATE_LIMIT_FAILED_SIGN_IN_PER_IP, parse_limit)?,
            sign_in_per_account: env.setting(&RATE_LIMIT_SIGN_IN_PER_ACCOUNT, parse_limit)?,
            sign_in_per_ip: env.setting(&RATE_LIMIT_SIGN_IN_PER_IP, parse_limit)?,
            reset_per_ip: env.setting(&RATE_LIMIT_RESET_PER_IP, parse_limit)?,
            reset_per_email: env.setting(&RATE_LIMIT_RESET_PER_EMAIL, parse_limit)?,
        })
    }
}
