//! A real SMTP server for the tests, in-process on a loopback port.
//!
//! The protocol is mailin's state machine; this file only moves lines between
//! a socket and the session, records accepted messages, and can be told to
//! answer with failures, so delivery faults are caused for real rather than
//! mocked.

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
};

use mailin::{Action, Handler, Response, SessionBuilder};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
};

/// One accepted message.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub to: Vec<String>,
    pub data: Vec<u8>,
}

impl ReceivedMail {
    pub fn parsed(&self) -> mailparse::ParsedMail<'_> {
        mailparse::parse_mail(&self.data).expect("a well-formed message")
    }

    pub fn header(&self, name: &str) -> Option<String> {
        use mailparse::MailHeaderMap;
        self.parsed().headers.get_first_value(name)
    }

    fn part(&self, mime: &str) -> Option<String> {
        let parsed = self.parsed();
        parsed
            .subparts
            .iter()
            .find(|part| part.ctype.mimetype == mime)
            .map(|part| part.get_body().expect("decodable part"))
    }

    pub fn text(&self) -> String {
        self.part("text/plain").expect("a text/plain part")
    }

    pub fn html(&self) -> String {
        self.part("text/html").expect("a text/html part")
    }

    /// The first activation link in the text part.
    pub fn activation_link(&self) -> Option<String> {
        let text = self.text();
        text.split_whitespace()
            .find(|word| word.contains("/activate/"))
            .map(|word| word.trim_end_matches(['.', ',', ')', '>']).to_owned())
    }

    pub fn activation_key(&self) -> String {
        let link = self.activation_link().expect("an activation link");
        link.rsplit('/').next().expect("a key").to_owned()
    }
}

#[derive(Debug, Default)]
struct Shared {
    received: Vec<ReceivedMail>,
    /// Failures to answer at RCPT, consumed one per message. (At RCPT rather
    /// than after DATA because mailin stays in its data state after a failed
    /// end of data, which no real server does.)
    scripted_failures: Vec<u16>,
    /// Recipients refused at RCPT with a fixed code.
    refused_recipients: HashMap<String, u16>,
    /// Each refused or failed delivery, for assertions.
    refusals: usize,
    /// How long each accepted message takes to acknowledge, to keep jobs in
    /// flight.
    delay: std::time::Duration,
}

/// Handle to the running server.
#[derive(Debug, Clone)]
pub struct MailServer {
    pub address: SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

impl MailServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind SMTP port");
        let address = listener.local_addr().expect("local address");
        let shared = Arc::new(Mutex::new(Shared::default()));
        tokio::spawn(accept_loop(listener, shared.clone()));
        Self { address, shared }
    }

    pub fn url(&self) -> String {
        format!("smtp://{}", self.address)
    }

    pub fn received(&self) -> Vec<ReceivedMail> {
        self.shared.lock().expect("lock").received.clone()
    }

    pub fn refusals(&self) -> usize {
        self.shared.lock().expect("lock").refusals
    }

    /// The next `count` messages are refused with `code`.
    pub fn fail_next(&self, count: usize, code: u16) {
        self.shared
            .lock()
            .expect("lock")
            .scripted_failures
            .extend(std::iter::repeat_n(code, count));
    }

    /// Each message is acknowledged only after `delay`.
    pub fn slow_down(&self, delay: std::time::Duration) {
        self.shared.lock().expect("lock").delay = delay;
    }

    /// Every message to `address` is refused at RCPT with `code`.
    pub fn refuse_recipient(&self, address: &str, code: u16) {
        self.shared
            .lock()
            .expect("lock")
            .refused_recipients
            .insert(address.to_lowercase(), code);
    }

    /// Messages to `address` are accepted again.
    pub fn accept_recipient(&self, address: &str) {
        self.shared
            .lock()
            .expect("lock")
            .refused_recipients
            .remove(&address.to_lowercase());
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Mutex<Shared>>) {
    while let Ok((stream, peer)) = listener.accept().await {
        tokio::spawn(serve(stream, peer.ip(), shared.clone()));
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    peer: IpAddr,
    shared: Arc<Mutex<Shared>>,
) -> io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let builder = SessionBuilder::new("porter-test-smtp");
    let mut session = builder.build(
        peer,
        Recorder {
            shared: shared.clone(),
            to: Vec::new(),
            data: Vec::new(),
        },
    );
    writer.write_all(&session.greeting().buffer()?).await?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let response = session.process(&line);
        if line == b".\r\n" {
            let delay = shared.lock().expect("lock").delay;
            tokio::time::sleep(delay).await;
        }
        match response.action {
            Action::NoReply => {}
            Action::Close => {
                writer.write_all(&response.buffer()?).await?;
                return Ok(());
            }
            Action::Reply | Action::UpgradeTls => writer.write_all(&response.buffer()?).await?,
        }
    }
}

struct Recorder {
    shared: Arc<Mutex<Shared>>,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Handler for Recorder {
    fn rcpt(&mut self, to: &str) -> Response {
        let mut shared = self.shared.lock().expect("lock");
        if let Some(code) = shared.refused_recipients.get(&to.to_lowercase()).copied() {
            shared.refusals += 1;
            return Response::custom(code, "recipient refused by the test server".into());
        }
        if !shared.scripted_failures.is_empty() {
            let code = shared.scripted_failures.remove(0);
            shared.refusals += 1;
            return Response::custom(code, "failure scripted by the test".into());
        }
        self.to.push(to.to_owned());
        mailin::response::OK
    }

    fn data_start(
        &mut self,
        _domain: &str,
        _from: &str,
        _is8bit: bool,
        _to: &[String],
    ) -> Response {
        self.data.clear();
        mailin::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let message = ReceivedMail {
            to: std::mem::take(&mut self.to),
            data: std::mem::take(&mut self.data),
        };
        self.shared.lock().expect("lock").received.push(message);
        mailin::response::OK
    }
}
