//! A real SMTP server, in-process on a loopback port: the tests' mail server
//! and the bench's sink.
//!
//! The protocol is mailin's state machine; this file only moves lines between
//! a socket and the session, records accepted messages, and can be told to
//! answer with failures or slowly, so delivery faults are caused for real
//! rather than mocked. Each message is stamped with the instant its final dot
//! was read, which is when a real server takes responsibility for it, and is
//! kept raw: it is parsed only when a test or the bench asks for a part, so
//! the server does as little as a fast one would while the bench measures.

use std::{
    collections::{HashMap, VecDeque, hash_map::Entry},
    io,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use mailin::{Action, Handler, Response, SessionBuilder};
use mailparse::MailHeaderMap as _;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};

/// One accepted message.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// The recipients as the client gave them.
    pub to: Vec<String>,
    pub data: Arc<[u8]>,
    /// When the end of its data was read.
    pub at: Instant,
}

impl ReceivedMail {
    pub fn header(&self, name: &str) -> Option<String> {
        mailparse::parse_mail(&self.data)
            .ok()?
            .headers
            .get_first_value(name)
    }

    /// The body of the part of type `mime`, or of the whole message when it
    /// has no parts and is of that type.
    fn part(&self, mime: &str) -> Option<String> {
        let parsed = mailparse::parse_mail(&self.data).ok()?;
        if parsed.subparts.is_empty() {
            return (parsed.ctype.mimetype == mime)
                .then(|| parsed.get_body().ok())
                .flatten();
        }
        parsed
            .subparts
            .iter()
            .find(|part| part.ctype.mimetype == mime)
            .and_then(|part| part.get_body().ok())
    }

    pub fn text(&self) -> String {
        self.part("text/plain").expect("a text/plain part")
    }

    pub fn html(&self) -> String {
        self.part("text/html").expect("a text/html part")
    }

    /// The first activation link in the text part.
    pub fn activation_link(&self) -> Option<String> {
        self.link_to("activate")
    }

    /// The key in the first activation link, if there is one.
    pub fn find_activation_key(&self) -> Option<String> {
        self.find_link_key("activate")
    }

    /// The first link to Porter's page `page` (`activate`, `reset-password`)
    /// in the text part.
    pub fn link_to(&self, page: &str) -> Option<String> {
        let marker = format!("/{page}/");
        self.part("text/plain")?
            .split_whitespace()
            .find(|word| word.contains(&marker))
            .map(|word| word.trim_end_matches(['.', ',', ')', '>']).to_owned())
    }

    /// The key in the first link to `page`, if there is one.
    pub fn find_link_key(&self, page: &str) -> Option<String> {
        let link = self.link_to(page)?;
        let key: String = link
            .rsplit(&format!("/{page}/"))
            .next()?
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        (!key.is_empty()).then_some(key)
    }

    /// The key in the first activation link; panics without one.
    pub fn activation_key(&self) -> String {
        self.find_activation_key().expect("an activation link")
    }
}

#[derive(Debug, Default)]
struct Shared {
    received: Vec<ReceivedMail>,
    /// The index in `received` of the first message to each recipient
    /// (normalized).
    first: HashMap<String, usize>,
    /// Messages to a recipient that had already received one.
    duplicates: usize,
    /// Failures to answer at RCPT, consumed one per message. (At RCPT rather
    /// than after DATA because mailin stays in its data state after a failed
    /// end of data, which no real server does.)
    scripted_failures: VecDeque<u16>,
    /// Recipients (normalized) refused at RCPT with a fixed code.
    refused_recipients: HashMap<String, u16>,
    /// Each refused or failed delivery, for assertions.
    refusals: usize,
    /// How long each accepted message takes to acknowledge, to keep jobs in
    /// flight.
    delay: Duration,
}

/// Handle to the running server.
#[derive(Debug, Clone)]
pub struct MailServer {
    pub address: SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

impl MailServer {
    /// Starts a server on a free loopback port; panics if none can be bound.
    pub async fn start() -> Self {
        Self::bind().await.expect("bind an SMTP port")
    }

    /// Starts a server on a free loopback port.
    pub async fn bind() -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Self { address, shared })
    }

    pub fn url(&self) -> String {
        format!("smtp://{}", self.address)
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        lock(&self.shared)
    }

    /// Every accepted message, in the order they arrived.
    pub fn received(&self) -> Vec<ReceivedMail> {
        self.lock().received.clone()
    }

    /// The first message to `recipient`, if one has arrived.
    pub fn first_to(&self, recipient: &str) -> Option<ReceivedMail> {
        let shared = self.lock();
        let index = *shared.first.get(&normalize(recipient))?;
        shared.received.get(index).cloned()
    }

    /// Messages to a recipient that had already received one.
    pub fn duplicates(&self) -> usize {
        self.lock().duplicates
    }

    /// Polls until every one of `recipients` has received a message or
    /// `deadline` passes; returns how many have.
    pub async fn wait_for(&self, recipients: &[String], deadline: Duration) -> usize {
        let until = Instant::now() + deadline;
        loop {
            let arrived = {
                let shared = self.lock();
                recipients
                    .iter()
                    .filter(|r| shared.first.contains_key(&normalize(r)))
                    .count()
            };
            if arrived == recipients.len() || Instant::now() >= until {
                return arrived;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn refusals(&self) -> usize {
        self.lock().refusals
    }

    /// The next `count` messages are refused with `code`.
    pub fn fail_next(&self, count: usize, code: u16) {
        self.lock()
            .scripted_failures
            .extend(std::iter::repeat_n(code, count));
    }

    /// Each message is acknowledged only after `delay`.
    pub fn slow_down(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Every message to `address` is refused at RCPT with `code`.
    pub fn refuse_recipient(&self, address: &str, code: u16) {
        self.lock()
            .refused_recipients
            .insert(normalize(address), code);
    }

    /// Messages to `address` are accepted again.
    pub fn accept_recipient(&self, address: &str) {
        self.lock().refused_recipients.remove(&normalize(address));
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while holding the lock leaves plain data behind; keep going.
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A recipient as the server files it: no brackets, lower case.
fn normalize(address: &str) -> String {
    address
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_lowercase()
}

async fn accept_loop(listener: TcpListener, shared: Arc<Mutex<Shared>>) {
    while let Ok((stream, peer)) = listener.accept().await {
        tokio::spawn(serve(stream, peer.ip(), shared.clone()));
    }
}

async fn serve(stream: TcpStream, peer: IpAddr, shared: Arc<Mutex<Shared>>) -> io::Result<()> {
    // Replies go out at once; any delay the bench measures is the client's.
    stream.set_nodelay(true)?;
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut session = SessionBuilder::new("porter-test-support").build(
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
            let delay = lock(&shared).delay;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
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
        let mut shared = lock(&self.shared);
        if let Some(code) = shared.refused_recipients.get(&normalize(to)).copied() {
            shared.refusals += 1;
            return Response::custom(code, "recipient refused by the test server".into());
        }
        if let Some(code) = shared.scripted_failures.pop_front() {
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
            data: std::mem::take(&mut self.data).into(),
            at: Instant::now(),
        };
        let mut shared = lock(&self.shared);
        let shared = &mut *shared;
        let index = shared.received.len();
        for to in &message.to {
            match shared.first.entry(normalize(to)) {
                Entry::Occupied(_) => shared.duplicates += 1,
                Entry::Vacant(entry) => {
                    entry.insert(index);
                }
            }
        }
        shared.received.push(message);
        mailin::response::OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &str = "From: a@porter.example\r\nTo: b@bench.example\r\n\
        Content-Type: text/plain\r\n\r\n\
        Open http://127.0.0.1:9/activate/AbCdEfGh0123456789AbCdEfGh012345 to activate.\r\n";

    fn mail(data: &str) -> ReceivedMail {
        ReceivedMail {
            to: vec!["b@bench.example".into()],
            data: data.as_bytes().into(),
            at: Instant::now(),
        }
    }

    #[test]
    fn finds_the_key_in_a_plain_message() {
        assert_eq!(
            mail(MESSAGE).find_activation_key().as_deref(),
            Some("AbCdEfGh0123456789AbCdEfGh012345")
        );
        assert_eq!(
            mail("Subject: hi\r\n\r\nno link\r\n").find_activation_key(),
            None
        );
    }

    /// Sends one message with `recipient`, expecting `codes` in turn for the
    /// greeting, HELO, MAIL and RCPT; the data goes only if RCPT is accepted.
    async fn send(server: &MailServer, recipient: &str, codes: [&str; 4]) {
        let stream = TcpStream::connect(server.address).await.expect("connect");
        let (reader, mut writer) = stream.into_split();
        let mut reader = BufReader::new(reader).lines();
        let mut expect = async |code: &str| {
            let line = reader.next_line().await.expect("read").expect("a line");
            assert!(line.starts_with(code), "{line}");
        };
        expect(codes[0]).await;
        let commands = [
            "HELO client.example\r\n".to_owned(),
            "MAIL FROM:<a@porter.example>\r\n".to_owned(),
            format!("RCPT TO:<{recipient}>\r\n"),
        ];
        for (command, code) in commands.iter().zip(&codes[1..]) {
            writer.write_all(command.as_bytes()).await.expect("write");
            expect(code).await;
        }
        if codes[3] == "250" {
            writer.write_all(b"DATA\r\n").await.expect("write");
            expect("354").await;
            writer.write_all(MESSAGE.as_bytes()).await.expect("write");
            writer.write_all(b".\r\n").await.expect("write");
            expect("250").await;
        }
        writer.write_all(b"QUIT\r\n").await.expect("write");
        expect("221").await;
    }

    #[tokio::test]
    async fn records_messages_by_recipient_and_counts_duplicates() {
        let server = MailServer::start().await;
        let accepted = ["220", "250", "250", "250"];
        send(&server, "B@Bench.Example", accepted).await;
        let arrived = server
            .wait_for(&["b@bench.example".to_owned()], Duration::from_secs(5))
            .await;
        assert_eq!(arrived, 1);
        let first = server.first_to("b@bench.example").expect("recorded");
        assert_eq!(first.to, vec!["B@Bench.Example".to_owned()]);
        assert!(first.find_activation_key().is_some());
        assert_eq!(server.duplicates(), 0);

        send(&server, "b@bench.example", accepted).await;
        assert_eq!(server.received().len(), 2);
        assert_eq!(server.duplicates(), 1);
        assert_eq!(
            server.first_to("b@bench.example").map(|m| m.at),
            Some(first.at)
        );
    }

    #[tokio::test]
    async fn refuses_as_told() {
        let server = MailServer::start().await;
        server.fail_next(1, 451);
        send(&server, "c@bench.example", ["220", "250", "250", "451"]).await;
        server.refuse_recipient("C@bench.example", 550);
        send(&server, "c@bench.example", ["220", "250", "250", "550"]).await;
        server.accept_recipient("c@bench.example");
        send(&server, "c@bench.example", ["220", "250", "250", "250"]).await;
        assert_eq!(server.refusals(), 2);
        assert_eq!(server.received().len(), 1);
    }
}
