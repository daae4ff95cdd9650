//! How long an account's stream grows and what loading it costs: anonymous
//! sign-ups with an active account's address append a bounded number of
//! events to the owner's stream, and an account is rebuilt from its latest
//! snapshot plus the events after it, however long its history.

use chrono::Utc;
use porter::{
    domain::{Account, AccountCommand, PasswordHash, snapshot::SNAPSHOT_EVERY},
    platform::store::{self, ClaimKind, EventMetadata},
};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{PASSWORD, TestApp, eventually, new_user, spawn_app};

impl TestApp {
    /// The account holding `email`'s claim.
    async fn address_owner(&self, email: &Value) -> Uuid {
        let canonical = email.as_str().expect("email").to_lowercase();
        store::claim_holder(&self.pool, ClaimKind::Email, &canonical)
            .await
            .expect("read claims")
            .expect("the address is held")
    }

    /// How many events `account_id`'s stream holds.
    async fn stream_length(&self, account_id: Uuid) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events WHERE stream_id = $1")
            .bind(store::account_stream(account_id))
            .fetch_one(&self.pool)
            .await
            .expect("count the stream")
    }
}

#[tokio::test]
async fn sign_ups_with_an_active_accounts_address_append_a_bounded_number_of_events_to_it() {
    let app = spawn_app().await;
    let owner = app.active_user().await;
    let owner_id = app.address_owner(&owner["email"]).await;
    let before = app.stream_length(owner_id).await;
    for _ in 0..100 {
        let mut attempt = new_user();
        attempt["email"] = owner["email"].clone();
        attempt["password"] = PASSWORD.into();
        assert_eq!(app.sign_up(&attempt).await.status(), 202);
    }
    // The owner is still told: its activation email, then the notice.
    let owner_email = owner["email"].as_str().expect("email");
    let to_owner = || {
        app.mail
            .received()
            .into_iter()
            .filter(|mail| {
                mail.to
                    .iter()
                    .any(|to| to.eq_ignore_ascii_case(owner_email))
            })
            .collect::<Vec<_>>()
    };
    let notice = eventually("the owner's notice", || async {
        to_owner().into_iter().nth(1)
    })
    .await;
    assert!(
        notice
            .header("Subject")
            .expect("subject")
            .contains("already have")
    );
    let appended = app.stream_length(owner_id).await - before;
    assert!(
        appended <= 2,
        "100 sign-ups appended {appended} events to the owner's stream (at most the notice and its delivery)"
    );
    assert_eq!(to_owner().len(), 2, "one notice for all the attempts");
}

impl TestApp {
    /// Rehashes `account`'s password `times` times: events that email
    /// nobody. Returns the account after them.
    async fn rehash(&self, mut account: Account, times: usize) -> Account {
        for _ in 0..times {
            let rehash = AccountCommand::UpgradePasswordHash {
                replaces: account.password_hash.clone(),
                password_hash: PasswordHash(format!("$argon2id$v=19${}", Uuid::new_v4())),
                at: Utc::now(),
            };
            account = self
                .web
                .commands
                .execute_on(account, rehash, &EventMetadata::default())
                .await
                .expect("rehash")
                .account;
        }
        account
    }

    /// The version of the stored snapshot of `account_id`'s stream.
    async fn snapshot_version(&self, account_id: Uuid) -> Option<i64> {
        sqlx::query_scalar("SELECT version FROM account_snapshots WHERE stream_id = $1")
            .bind(store::account_stream(account_id))
            .fetch_optional(&self.pool)
            .await
            .expect("read the snapshot")
    }

    /// Runs `statement` on the snapshot of `account_id`'s stream.
    async fn alter_snapshot(&self, account_id: Uuid, statement: &'static str) {
        sqlx::query(statement)
            .bind(store::account_stream(account_id))
            .execute(&self.pool)
            .await
            .expect("alter the snapshot");
    }
}

#[tokio::test]
async fn an_account_with_a_long_history_is_loaded_from_its_snapshot() {
    let app = spawn_app().await;
    let user = app.active_user().await;
    let id = app.address_owner(&user["email"]).await;
    let commands = &app.web.commands;
    let account = commands.load(id).await.expect("load").expect("account");
    let account = app.rehash(account, 100).await;
    // The worker's job for the activation email may have loaded the account
    // meanwhile and saved a snapshot: start from none.
    app.alter_snapshot(id, "DELETE FROM account_snapshots WHERE stream_id = $1")
        .await;
    assert_eq!(app.snapshot_version(id).await, None);

    // The first load folds the whole stream and saves what it built.
    let length = app.stream_length(id).await;
    assert!(length >= SNAPSHOT_EVERY);
    assert_eq!(
        commands.load(id).await.expect("load"),
        Some(account.clone())
    );
    assert_eq!(app.snapshot_version(id).await, Some(length));

    // Mark the snapshot: a load that shows the mark started from it and
    // did not read the events before it (the first would set the username).
    let account = app.rehash(account, 3).await;
    app.alter_snapshot(
        id,
        "UPDATE account_snapshots \
         SET state = jsonb_set(state, '{username,display}', '\"from-the-snapshot\"') WHERE stream_id = $1",
    )
    .await;
    let loaded = commands.load(id).await.expect("load").expect("account");
    assert_eq!(loaded.username.as_str(), "from-the-snapshot");
    assert_eq!(
        loaded.version,
        length + 3,
        "the events after it are applied"
    );
    assert_eq!(loaded.password_hash, account.password_hash);
    assert_eq!(
        app.snapshot_version(id).await,
        Some(length),
        "3 events are no reason to save another"
    );

    // A snapshot of another schema is ignored: the whole stream is read.
    app.alter_snapshot(
        id,
        "UPDATE account_snapshots SET schema = schema + 1 WHERE stream_id = $1",
    )
    .await;
    assert_eq!(commands.load(id).await.expect("load"), Some(account));
}
