//! An SMTP sink on a loopback port that accepts everything and records when
//! each message arrived and to whom.
//!
//! The protocol is mailin's state machine (as in the integration tests'
//! server); this file moves lines between sockets and sessions and stamps
//! each message with the instant its final dot was read, which is when a
//! real server would take responsibility for it. Messages are kept raw and
//! parsed only when a key is asked for, so the sink does as little as a
//! fast server would while measurements run.

use std::{
    collections::{HashMap, hash_map::Entry},
    io,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use mailin::{Action, Handler, Response, SessionBuilder};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
};

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub at: Instant,
    pub data: Arc<Vec<u8>>,
}

#[derive(Debug, Default)]
struct Recorded {
    /// The first message to each recipient (lower-cased address).
    first: HashMap<String, Arrival>,
    /// Messages to a recipient that had already received one.
    duplicates: usize,
}

/// Handle to the running sink.
#[derive(Debug, Clone)]
pub struct SmtpSink {
    pub address: SocketAddr,
    recorded: Arc<Mutex<Recorded>>,
}

impl SmtpSink {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the SMTP sink")?;
        let address = listener.local_addr().context("SMTP sink address")?;
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        tokio::spawn(accept_loop(listener, recorded.clone()));
        Ok(Self { address, recorded })
    }

    pub fn url(&self) -> String {
        format!("smtp://{}", self.address)
    }

    fn lock(&self) -> MutexGuard<'_, Recorded> {
        lock(&self.recorded)
    }

    /// When the first message to `recipient` arrived, if it has.
    pub fn arrival(&self, recipient: &str) -> Option<Arrival> {
        self.lock().first.get(&normalize(recipient)).cloned()
    }

    pub fn duplicates(&self) -> usize {
        self.lock().duplicates
    }

    /// How many of `recipients` have received their message.
    pub fn count_arrived<'a>(&self, recipients: impl IntoIterator<Item = &'a String>) -> usize {
        let recorded = self.lock();
        recipients
            .into_iter()
            .filter(|r| recorded.first.contains_key(&normalize(r)))
            .count()
    }

    /// Polls until every one of `recipients` has received a message or
    /// `deadline` passes; returns how many arrived.
    pub async fn wait_for(&self, recipients: &[String], deadline: Duration) -> usize {
        let until = Instant::now() + deadline;
        loop {
            let arrived = self.count_arrived(recipients);
            if arrived == recipients.len() || Instant::now() >= until {
                return arrived;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn lock(recorded: &Mutex<Recorded>) -> MutexGuard<'_, Recorded> {
    // A panic while holding the lock leaves plain data behind; keep going.
    recorded
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn normalize(address: &str) -> String {
    address
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_lowercase()
}

/// The activation key in a message: the last path segment of the first
/// `/activate/` link in its text part.
pub fn activation_key(data: &[u8]) -> Option<String> {
    let parsed = mailparse::parse_mail(data).ok()?;
    let text = parsed
        .subparts
        .iter()
        .find(|part| part.ctype.mimetype == "text/plain")
        .and_then(|part| part.get_body().ok())
        .or_else(|| parsed.get_body().ok())?;
    text.split_whitespace()
        .find(|word| word.contains("/activate/"))
        .and_then(|link| link.rsplit("/activate/").next())
        .map(|key| {
            key.chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect::<String>()
        })
        .filter(|key| !key.is_empty())
}

async fn accept_loop(listener: TcpListener, recorded: Arc<Mutex<Recorded>>) {
    while let Ok((stream, peer)) = listener.accept().await {
        tokio::spawn(serve(stream, peer.ip(), recorded.clone()));
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    peer: IpAddr,
    recorded: Arc<Mutex<Recorded>>,
) -> io::Result<()> {
    // Replies go out at once; any delay measured is the client's.
    stream.set_nodelay(true)?;
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut session = SessionBuilder::new("porter-bench-sink").build(
        peer,
        Recorder {
            recorded,
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
    recorded: Arc<Mutex<Recorded>>,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Handler for Recorder {
    fn rcpt(&mut self, to: &str) -> Response {
        self.to.push(normalize(to));
        mailin::response::OK
    }

    fn data_start(&mut self, _domain: &str, _from: &str, _8bit: bool, _to: &[String]) -> Response {
        self.data.clear();
        mailin::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let arrival = Arrival {
            at: Instant::now(),
            data: Arc::new(std::mem::take(&mut self.data)),
        };
        let mut recorded = lock(&self.recorded);
        for to in self.to.drain(..) {
            match recorded.first.entry(to) {
                Entry::Occupied(_) => recorded.duplicates += 1,
                Entry::Vacant(entry) => {
                    entry.insert(arrival.clone());
                }
            }
        }
        mailin::response::OK
    }
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
        net::TcpStream,
    };

    use super::*;

    const MESSAGE: &str = "From: a@porter.example\r\nTo: b@bench.example\r\n\
        Content-Type: text/plain\r\n\r\n\
        Open http://127.0.0.1:9/activate/AbCdEfGh0123456789AbCdEfGh012345 to activate.\r\n";

    #[test]
    fn finds_the_key_in_a_plain_message() {
        assert_eq!(
            activation_key(MESSAGE.as_bytes()).as_deref(),
            Some("AbCdEfGh0123456789AbCdEfGh012345")
        );
        assert_eq!(activation_key(b"Subject: hi\r\n\r\nno link\r\n"), None);
    }

    #[tokio::test]
    async fn records_arrival_by_recipient() {
        let sink = SmtpSink::start().await.expect("sink starts");
        let stream = TcpStream::connect(sink.address).await.expect("connect");
        let (reader, mut writer) = stream.into_split();
        let mut reader = BufReader::new(reader).lines();
        let mut expect = async |code: &str| {
            let line = reader.next_line().await.expect("read").expect("a line");
            assert!(line.starts_with(code), "{line}");
        };
        expect("220").await;
        for (command, code) in [
            ("HELO client.example\r\n", "250"),
            ("MAIL FROM:<a@porter.example>\r\n", "250"),
            ("RCPT TO:<B@Bench.Example>\r\n", "250"),
            ("DATA\r\n", "354"),
        ] {
            writer.write_all(command.as_bytes()).await.expect("write");
            expect(code).await;
        }
        writer.write_all(MESSAGE.as_bytes()).await.expect("write");
        writer.write_all(b".\r\n").await.expect("write");
        expect("250").await;
        let arrived = sink
            .wait_for(&["b@bench.example".to_owned()], Duration::from_secs(5))
            .await;
        assert_eq!(arrived, 1);
        let arrival = sink.arrival("b@bench.example").expect("recorded");
        assert!(activation_key(&arrival.data).is_some());
        assert_eq!(sink.duplicates(), 0);
    }
}
