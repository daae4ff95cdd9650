//! `/dev/mail`: the emails `porter dev` sent, for a developer's browser.
//!
//! Served only when the state has a [`crate::platform::mail::DevMailbox`], which only
//! `shell::startup::run_dev` gives it; `porter web` answers `404` here. The pages
//! are Porter's own developer tool, in English, built here rather than from
//! the operator's templates:
//!
//! - `/dev/mail`: the messages, newest first (time, to, subject);
//! - `/dev/mail/{id}`: one message's headers and its text part, links
//!   clickable, with a link to
//! - `/dev/mail/{id}/html`: its HTML part as the recipient sees it.

use handlebars::html_escape;
use http::{Response, StatusCode};

use crate::platform::http::{
    openapi::{self, Answer, Auth, Content, Operation, Parameter, RequestBody, Tag},
    response::{ApiError, Body, html_response},
};
use crate::platform::mail::{DevMailbox, DevMessage};

const NOT_DEV: Answer = Answer::error(404, "Not `porter dev`, or no such message");

pub static INDEX: Operation = Operation {
    id: "dev_mail",
    tag: Tag::Dev,
    summary: "The emails `porter dev` sent, newest first",
    description: "Served only by `porter dev`.",
    auth: Auth::Public,
    parameters: &[],
    body: RequestBody::None,
    answers: &[Answer::new(200, "The mailbox", Content::Page), NOT_DEV],
};

const ID: Parameter = Parameter::path("id", "The message's number in the dev mailbox", || {
    openapi::integer(1, u64::MAX)
});

pub static MESSAGE: Operation = Operation {
    id: "dev_mail_message",
    tag: Tag::Dev,
    summary: "One email's headers and text part",
    description: "Served only by `porter dev`.",
    auth: Auth::Public,
    parameters: &[ID],
    body: RequestBody::None,
    answers: &[Answer::new(200, "The message", Content::Page), NOT_DEV],
};

pub static MESSAGE_HTML: Operation = Operation {
    id: "dev_mail_message_html",
    tag: Tag::Dev,
    summary: "One email's HTML part",
    description: "Served only by `porter dev`.",
    auth: Auth::Public,
    parameters: &[ID],
    body: RequestBody::None,
    answers: &[Answer::new(200, "The HTML part", Content::Page), NOT_DEV],
};

/// `/dev/mail`: the messages, newest first.
pub fn index(mailbox: &DevMailbox) -> Result<Response<Body>, ApiError> {
    Ok(html_response(StatusCode::OK, list(&mailbox.newest_first())))
}

/// `/dev/mail/{id}`: one message's headers and text part.
pub fn message(mailbox: &DevMailbox, id: &str) -> Result<Response<Body>, ApiError> {
    Ok(html_response(StatusCode::OK, show(&find(mailbox, id)?)))
}

/// `/dev/mail/{id}/html`: one message's HTML part.
pub fn message_html(mailbox: &DevMailbox, id: &str) -> Result<Response<Body>, ApiError> {
    Ok(html_response(StatusCode::OK, find(mailbox, id)?.html))
}

fn find(mailbox: &DevMailbox, id: &str) -> Result<DevMessage, ApiError> {
    id.parse::<u64>()
        .ok()
        .and_then(|id| mailbox.get(id))
        .ok_or(ApiError::NotFound)
}

fn list(messages: &[DevMessage]) -> String {
    let rows: String = messages
        .iter()
        .map(|m| {
            format!(
                "<tr><td>{}</td><td>{}</td><td><a href=\"/dev/mail/{}\">{}</a></td></tr>\n",
                m.sent_at.format("%Y-%m-%d %H:%M:%S UTC"),
                html_escape(&m.to),
                m.id,
                html_escape(&m.subject),
            )
        })
        .collect();
    let body = if messages.is_empty() {
        "<p>No email sent yet. Sign up, and the activation email shows up here.</p>".to_owned()
    } else {
        format!(
            "<table>\n<thead><tr><th>Sent</th><th>To</th><th>Subject</th></tr></thead>\n<tbody>\n{rows}</tbody>\n</table>"
        )
    };
    page(
        "Mailbox",
        &format!(
            "<h1>Mailbox <small>({} message{}, newest first)</small></h1>\n{body}",
            messages.len(),
            if messages.len() == 1 { "" } else { "s" }
        ),
    )
}

fn show(m: &DevMessage) -> String {
    page(
        &m.subject,
        &format!(
            "<p><a href=\"/dev/mail\">&larr; Mailbox</a></p>\n\
             <h1>{subject}</h1>\n\
             <table class=\"headers\">\n\
             <tr><th>Sent</th><td>{sent}</td></tr>\n\
             <tr><th>To</th><td>{to}</td></tr>\n\
             <tr><th>Language</th><td>{locale}</td></tr>\n\
             </table>\n\
             <p><a href=\"/dev/mail/{id}/html\">HTML part</a> (as the recipient sees it)</p>\n\
             <h2>Text part</h2>\n<pre>{text}</pre>",
            subject = html_escape(&m.subject),
            sent = m.sent_at.format("%Y-%m-%d %H:%M:%S UTC"),
            to = html_escape(&m.to),
            locale = m.locale,
            id = m.id,
            text = linkify(&m.text),
        ),
    )
}

/// Escapes `text` and makes each `http://` or `https://` URL in it a link.
fn linkify(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = ["http://", "https://"]
        .iter()
        .filter_map(|scheme| rest.find(scheme))
        .min()
    {
        out.push_str(&html_escape(&rest[..start]));
        let url_len = rest[start..]
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | ')'))
            .unwrap_or(rest.len() - start);
        let url = html_escape(&rest[start..start + url_len]);
        out.push_str(&format!("<a href=\"{url}\">{url}</a>"));
        rest = &rest[start + url_len..];
    }
    out.push_str(&html_escape(rest));
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"robots\" content=\"noindex\">\n<title>{} · Porter dev mail</title>\n\
         <style>\n\
         body {{ margin: 2rem; font: 15px/1.5 system-ui, sans-serif; color: #18181b; }}\n\
         table {{ border-collapse: collapse; }}\n\
         th, td {{ padding: 0.3rem 0.8rem; border-bottom: 1px solid #e4e4e7; text-align: left; vertical-align: top; }}\n\
         small {{ color: #71717a; font-weight: normal; }}\n\
         pre {{ padding: 1rem; background: #f4f4f5; white-space: pre-wrap; }}\n\
         </style>\n</head>\n<body>\n<p><small>porter dev</small></p>\n{}\n</body>\n</html>\n",
        html_escape(title),
        body
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_links_and_everything_is_escaped() {
        assert_eq!(
            linkify("Open <this>:\nhttp://127.0.0.1:8080/activate/AbC?x=1&y=2\n\nBye & thanks"),
            "Open &lt;this&gt;:\n<a href=\"http://127.0.0.1:8080/activate/AbC?x&#x3D;1&amp;y&#x3D;2\">\
             http://127.0.0.1:8080/activate/AbC?x&#x3D;1&amp;y&#x3D;2</a>\n\nBye &amp; thanks"
        );
        assert_eq!(
            linkify("(see https://a.example)"),
            "(see <a href=\"https://a.example\">https://a.example</a>)"
        );
        assert_eq!(linkify("no links"), "no links");
    }
}
