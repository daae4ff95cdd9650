//! The mailbox of `porter dev`: every email the process sent, kept in
//! memory for `/dev/mail`.
//!
//! `porter dev` runs the web server and the worker in one process, so the
//! worker's [`super::Mailer`] records each message here after handing it to
//! the transport, and the web server lists them. Nothing else creates one:
//! `porter web` and `porter worker` never keep the emails they send (they
//! carry working activation links).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use chrono::{DateTime, Utc};

use super::RenderedEmail;
use crate::domain::Locale;

/// The newest messages kept; older ones are dropped.
const CAPACITY: usize = 200;

/// One message as it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevMessage {
    /// 1 for the first message of the process, then counting up.
    pub id: u64,
    pub sent_at: DateTime<Utc>,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub locale: Locale,
}

#[derive(Debug, Default)]
struct Inner {
    messages: VecDeque<DevMessage>,
    last_id: u64,
}

/// The messages a `porter dev` process sent. Cloning shares the mailbox.
#[derive(Debug, Clone, Default)]
pub struct DevMailbox(Arc<Mutex<Inner>>);

impl DevMailbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps a message that was handed to the transport.
    pub fn record(&self, to: &str, email: &RenderedEmail) {
        let mut inner = self.lock();
        inner.last_id += 1;
        let message = DevMessage {
            id: inner.last_id,
            sent_at: Utc::now(),
            to: to.to_owned(),
            subject: email.subject.clone(),
            text: email.text.clone(),
            html: email.html.clone(),
            locale: email.locale.clone(),
        };
        if inner.messages.len() == CAPACITY {
            inner.messages.pop_front();
        }
        inner.messages.push_back(message);
    }

    /// Every kept message, newest first.
    pub fn newest_first(&self) -> Vec<DevMessage> {
        self.lock().messages.iter().rev().cloned().collect()
    }

    pub fn get(&self, id: u64) -> Option<DevMessage> {
        self.lock().messages.iter().find(|m| m.id == id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves whole messages behind.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(subject: &str) -> RenderedEmail {
        RenderedEmail {
            subject: subject.into(),
            text: "text".into(),
            html: "<p>html</p>".into(),
            locale: Locale::english(),
        }
    }

    #[test]
    fn lists_newest_first_and_keeps_a_bounded_number() {
        let mailbox = DevMailbox::new();
        for n in 1..=CAPACITY + 5 {
            mailbox.record("a@example.com", &email(&format!("message {n}")));
        }
        let messages = mailbox.newest_first();
        assert_eq!(messages.len(), CAPACITY);
        assert_eq!(messages[0].subject, format!("message {}", CAPACITY + 5));
        assert_eq!(messages[0].id, (CAPACITY + 5) as u64);
        assert_eq!(mailbox.get(1), None, "the oldest were dropped");
        assert_eq!(
            mailbox.get(6).map(|m| m.subject),
            Some("message 6".to_owned())
        );
    }
}
