//! Delivery of rendered emails over SMTP or into a directory of `.eml` files.
//!
//! The job that sends an email needs one answer from a failed send: is it
//! worth retrying? [`SendError`] gives that answer, so the retry policy can
//! live with the job and not here. Error texts come from the SMTP server or
//! the operating system and never include the message body, so the
//! activation link cannot leak into logs through them.

use std::{io, path::PathBuf, time::Duration};

use lettre::{
    Address, AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{
        Mailbox, MultiPart,
        header::{Header, HeaderName, HeaderValue},
    },
    transport::smtp,
};

use super::{DevMailbox, RenderedEmail};

/// How long one SMTP command may take before the send fails as transient.
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where emails go. Cloning is cheap (the SMTP pool is shared).
#[derive(Debug, Clone)]
pub enum MailTransport {
    /// A pooled SMTP client (`smtp://` or `smtps://`).
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// One `.eml` file per email in a directory (`file:`), for development.
    File(AsyncFileTransport<Tokio1Executor>),
}

/// The mail transport URL is unusable.
///
/// Messages never repeat the URL, which may hold SMTP credentials.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The URL does not parse.
    #[error("invalid mail transport URL: {0}")]
    Url(#[from] url::ParseError),
    /// The scheme is not `smtp`, `smtps` or `file`.
    #[error("unsupported mail transport scheme {0:?} (expected smtp, smtps or file)")]
    Scheme(String),
    /// A `file:` URL without a usable path.
    #[error("mail transport file URL has no usable directory path")]
    FilePath,
    /// lettre rejected an `smtp://` or `smtps://` URL.
    #[error("invalid SMTP transport URL: {0}")]
    Smtp(#[from] smtp::Error),
    /// The `.eml` directory cannot be created.
    #[error("cannot create mail directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
}

impl MailTransport {
    /// Builds a transport from a URL:
    ///
    /// - `smtp://host:25` (plain), `smtp://user:pass@host:587?tls=required`
    ///   (STARTTLS), `smtps://user:pass@host:465` (implicit TLS);
    ///   percent-encode special characters in the user and password.
    /// - `file:///absolute/dir` or `file:relative/dir`: the directory is
    ///   created if missing.
    ///
    /// Nothing connects here: SMTP connections are opened by the first send.
    /// Call it inside a Tokio runtime: the SMTP pool spawns its idle-cleanup
    /// task on creation (`tokio::spawn` panics outside a runtime).
    pub fn from_config(url: &str) -> Result<Self, TransportError> {
        let url = url.trim();
        let parsed = url::Url::parse(url)?;
        match parsed.scheme() {
            "smtp" | "smtps" => {
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?
                    .timeout(Some(SMTP_TIMEOUT))
                    .build();
                tracing::info!(
                    scheme = parsed.scheme(),
                    host = parsed.host_str(),
                    port = parsed.port(),
                    "mail transport: SMTP"
                );
                Ok(Self::Smtp(transport))
            }
            "file" => {
                let dir = file_url_dir(url, &parsed)?;
                std::fs::create_dir_all(&dir).map_err(|source| TransportError::CreateDir {
                    path: dir.clone(),
                    source,
                })?;
                tracing::info!(dir = %dir.display(), "mail transport: .eml files");
                Ok(Self::File(AsyncFileTransport::new(dir)))
            }
            other => Err(TransportError::Scheme(other.to_owned())),
        }
    }
}

/// The directory named by a `file:` URL.
///
/// `url::Url` follows the WHATWG rules, which read `file:relative/dir` as
/// `/relative/dir`; so only the `file://` form goes through it, and anything
/// else after `file:` is taken as a literal path.
fn file_url_dir(raw: &str, parsed: &url::Url) -> Result<PathBuf, TransportError> {
    // The scheme matched "file" (any case), so the first 5 bytes are ASCII.
    let rest = raw.get("file:".len()..).unwrap_or_default();
    if rest.starts_with("//") {
        parsed.to_file_path().map_err(|()| TransportError::FilePath)
    } else if rest.is_empty() {
        Err(TransportError::FilePath)
    } else {
        Ok(PathBuf::from(rest))
    }
}

/// Why an email was not handed over to the transport.
///
/// Messages never contain the email body (and so never the link).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Retrying later may succeed: SMTP 4xx, connection, I/O, TLS or timeout
    /// errors, file transport errors.
    #[error("transient mail error: {0:#}")]
    Transient(anyhow::Error),
    /// Retrying the same email will fail again: SMTP 5xx, invalid recipient
    /// address, message that cannot be built.
    #[error("permanent mail error: {0:#}")]
    Permanent(anyhow::Error),
}

impl From<smtp::Error> for SendError {
    /// A 5xx reply is permanent, and so is a message the relay cannot carry
    /// at all ([`relay_cannot_carry`]). Everything else is transient,
    /// including lettre's other "client" errors, which are relay-wide
    /// configuration problems (no STARTTLS, no usable AUTH mechanism) that an
    /// operator can fix: the job's retry budget bounds the cost.
    fn from(err: smtp::Error) -> Self {
        if err.is_permanent() {
            Self::Permanent(anyhow::Error::new(err).context("SMTP server rejected the email"))
        } else if relay_cannot_carry(&err) {
            Self::Permanent(
                anyhow::Error::new(err).context("the SMTP relay cannot carry this email"),
            )
        } else if err.is_timeout() {
            Self::Transient(anyhow::Error::new(err).context("SMTP timeout"))
        } else {
            Self::Transient(anyhow::Error::new(err).context("SMTP"))
        }
    }
}

/// Whether lettre refused, before sending anything, a message this relay
/// lacks an extension for: a non-ASCII address without SMTPUTF8, or
/// non-ASCII content without 8BITMIME. The same message through the same
/// relay fails the same way every time, so retrying only delays the verdict.
/// lettre reports both as "client" errors told apart by their text alone.
fn relay_cannot_carry(err: &smtp::Error) -> bool {
    err.is_client()
        && err
            .to_string()
            .contains("non-ascii chars but server does not support")
}

/// Sends rendered emails from one sender address. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Mailer {
    transport: MailTransport,
    from: Mailbox,
    /// `porter dev` only: where sent messages are kept for `/dev/mail`.
    dev_mailbox: Option<DevMailbox>,
}

impl Mailer {
    /// A mailer that sends as `from`, e.g. `"Porter <no-reply@example.com>"`
    /// parsed into a [`Mailbox`].
    pub fn new(transport: MailTransport, from: Mailbox) -> Self {
        Self {
            transport,
            from,
            dev_mailbox: None,
        }
    }

    /// Also keeps every sent message in `mailbox` (`porter dev`).
    #[must_use]
    pub fn keeping_in(mut self, mailbox: DevMailbox) -> Self {
        self.dev_mailbox = Some(mailbox);
        self
    }

    /// Sends `rendered` to `to`, an address already validated at sign-up
    /// (see [`compose`]).
    pub async fn send(&self, to: &str, rendered: &RenderedEmail) -> Result<(), SendError> {
        let message = compose(&self.from, to, rendered)?;
        let message_id = message
            .headers()
            .get_raw("Message-ID")
            .unwrap_or_default()
            .to_owned();
        match &self.transport {
            MailTransport::Smtp(smtp) => {
                smtp.send(message).await?;
            }
            MailTransport::File(file) => {
                file.send(message).await.map_err(|err| {
                    SendError::Transient(anyhow::Error::new(err).context("file transport"))
                })?;
            }
        }
        tracing::debug!(%message_id, "email handed to transport");
        if let Some(mailbox) = &self.dev_mailbox {
            mailbox.record(to, rendered);
        }
        Ok(())
    }
}

/// Builds the message Porter sends: multipart/alternative (a text part that
/// reads on its own, then HTML), with `Date`, a fresh `Message-ID` (a retried
/// job sends an email with a new id), `Content-Language`, and
/// `Auto-Submitted: auto-generated` (RFC 3834), which tells vacation
/// responders and mailing lists not to answer or loop it back.
pub fn compose(from: &Mailbox, to: &str, rendered: &RenderedEmail) -> Result<Message, SendError> {
    let to: Address = to.parse().map_err(|err| {
        SendError::Permanent(anyhow::Error::new(err).context("invalid recipient address"))
    })?;
    let message_id = format!("<{}@{}>", uuid::Uuid::new_v4(), from.email.domain());
    Message::builder()
        .from(from.clone())
        .to(Mailbox::new(None, to))
        .subject(rendered.subject.as_str())
        .date_now()
        .message_id(Some(message_id))
        .header(AutoSubmitted)
        .header(ContentLanguage(rendered.locale.to_string()))
        .multipart(MultiPart::alternative_plain_html(
            rendered.text.clone(),
            rendered.html.clone(),
        ))
        .map_err(|err| SendError::Permanent(anyhow::Error::new(err).context("cannot build email")))
}

/// `Auto-Submitted: auto-generated`.
#[derive(Debug, Clone, Copy)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_owned())
    }
}

/// `Content-Language: de`; the value is a parsed BCP 47 tag.
#[derive(Debug, Clone)]
struct ContentLanguage(String);

impl Header for ContentLanguage {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Content-Language")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.to_owned()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::mail::{
        EmailKind,
        templates::tests::{activation_ctx, render},
    };

    fn dir(raw: &str) -> Result<PathBuf, TransportError> {
        file_url_dir(raw, &url::Url::parse(raw).expect("parses"))
    }

    #[test]
    fn file_url_forms() {
        assert_eq!(
            dir("file:relative/outbox").expect("relative"),
            PathBuf::from("relative/outbox")
        );
        assert_eq!(
            dir("file:///var/mail/outbox").expect("absolute"),
            PathBuf::from("/var/mail/outbox")
        );
        assert_eq!(
            dir("file://localhost/var/mail").expect("localhost"),
            PathBuf::from("/var/mail")
        );
        assert!(matches!(
            dir("file://mailhost/var/mail"),
            Err(TransportError::FilePath)
        ));
    }

    #[test]
    fn transport_urls() {
        assert!(matches!(
            MailTransport::from_config("imap://mail.example.com"),
            Err(TransportError::Scheme(s)) if s == "imap"
        ));
        assert!(matches!(
            MailTransport::from_config("file:"),
            Err(TransportError::FilePath)
        ));
        assert!(matches!(
            MailTransport::from_config("not a url"),
            Err(TransportError::Url(_))
        ));
    }

    #[tokio::test]
    async fn smtp_url_builds_without_connecting() {
        let transport =
            MailTransport::from_config("smtp://user:s3cret@127.0.0.1:2525?tls=required")
                .expect("valid URL");
        assert!(matches!(transport, MailTransport::Smtp(_)));
        assert!(!format!("{transport:?}").contains("s3cret"));

        let err = MailTransport::from_config("smtp://user:s3cret@127.0.0.1:2525?tls=bogus")
            .expect_err("unknown tls mode");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[tokio::test]
    async fn file_transport_writes_multipart_alternative_eml() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mail_dir = dir.path().join("outbox");
        let url = url::Url::from_directory_path(&mail_dir).expect("absolute path");
        let transport = MailTransport::from_config(url.as_str()).expect("file transport");
        let from = "Porter <no-reply@porter.example.com>"
            .parse()
            .expect("mailbox");
        let mailer = Mailer::new(transport, from);

        let email = render(EmailKind::Activation, &activation_ctx());
        mailer
            .send("alice@example.org", &email)
            .await
            .expect("written");

        let files: Vec<_> = std::fs::read_dir(&mail_dir)
            .expect("outbox exists")
            .map(|entry| entry.expect("entry").path())
            .collect();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].extension().and_then(|e| e.to_str()), Some("eml"));
        let eml = std::fs::read_to_string(&files[0]).expect("utf-8 eml");
        for expected in [
            "From: Porter <no-reply@porter.example.com>\r\n",
            "To: alice@example.org\r\n",
            "Subject: Activate your Porter account\r\n",
            "Message-ID: <",
            "@porter.example.com>\r\n",
            "Date: ",
            "Auto-Submitted: auto-generated\r\n",
            "Content-Language: en\r\n",
            "Content-Type: multipart/alternative;",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Type: text/html; charset=utf-8",
        ] {
            assert!(eml.contains(expected), "missing {expected:?} in:\n{eml}");
        }
        let text_at = eml.find("text/plain").expect("text part");
        let html_at = eml.find("text/html").expect("html part");
        assert!(text_at < html_at, "text part comes first");
    }

    #[tokio::test]
    async fn invalid_recipient_is_permanent() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = url::Url::from_directory_path(dir.path()).expect("absolute path");
        let transport = MailTransport::from_config(url.as_str()).expect("file transport");
        let mailer = Mailer::new(
            transport,
            "no-reply@porter.example.com".parse().expect("mailbox"),
        );

        let email = render(EmailKind::Activation, &activation_ctx());
        let err = mailer
            .send("not an address", &email)
            .await
            .expect_err("rejected");
        assert!(matches!(err, SendError::Permanent(_)), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }
}
