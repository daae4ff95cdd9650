//! How `porter replay` shows its work: a progress bar on a terminal, plain
//! lines in logs and pipes, and the summary it prints at the end. The replay
//! itself is `features::accounts::replay`.

use std::time::{Duration, Instant};

use crate::features::accounts::replay::{Phase, Progress, ReplayReport};

/// Progress for a terminal: a bar with events/s and ETA.
#[derive(Debug)]
pub struct ProgressBar {
    bar: indicatif::ProgressBar,
}

impl ProgressBar {
    pub fn new() -> Self {
        let bar = indicatif::ProgressBar::with_draw_target(
            None,
            indicatif::ProgressDrawTarget::stderr_with_hz(4),
        );
        Self { bar }
    }
}

impl Default for ProgressBar {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for ProgressBar {
    fn started(&mut self, total: u64) {
        self.bar.set_length(total.max(1));
        let style = indicatif::ProgressStyle::with_template(
            "{msg:12} [{bar:36}] {human_pos}/{human_len} events  {per_sec}  ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
        self.bar.set_style(style);
    }

    fn phase(&mut self, phase: Phase) {
        self.bar.set_message(phase_name(phase));
    }

    fn applied(&mut self, applied: u64) {
        if applied > self.bar.length().unwrap_or(0) {
            self.bar.set_length(applied);
        }
        self.bar.set_position(applied);
    }

    fn finished(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Progress for logs and pipes: one plain line every few seconds.
#[derive(Debug)]
pub struct ProgressLines<W: std::io::Write + Send> {
    out: W,
    total: u64,
    started: Instant,
    last_line: Instant,
    every: Duration,
    phase: Phase,
}

impl<W: std::io::Write + Send> ProgressLines<W> {
    pub fn new(out: W, every: Duration) -> Self {
        Self {
            out,
            total: 0,
            started: Instant::now(),
            last_line: Instant::now(),
            every,
            phase: Phase::Building,
        }
    }
}

impl<W: std::io::Write + Send> Progress for ProgressLines<W> {
    fn started(&mut self, total: u64) {
        self.total = total;
        self.started = Instant::now();
        self.last_line = Instant::now();
        let _ = writeln!(self.out, "replay: about {total} events to fold");
    }

    fn phase(&mut self, phase: Phase) {
        if phase != self.phase {
            self.phase = phase;
            let _ = writeln!(self.out, "replay: {}", phase_name(phase));
        }
    }

    fn applied(&mut self, applied: u64) {
        if self.last_line.elapsed() < self.every {
            return;
        }
        self.last_line = Instant::now();
        let _ = writeln!(
            self.out,
            "replay: {}",
            progress_line(applied, self.total, self.started.elapsed())
        );
    }
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Building => "building",
        Phase::CatchingUp => "catching up",
        Phase::Comparing => "comparing",
        Phase::Swapping => "swapping",
    }
}

/// `350000/1000000 events (35%), 112000 events/s, ETA 6 s`.
pub fn progress_line(applied: u64, total: u64, elapsed: Duration) -> String {
    let rate = applied as f64 / elapsed.as_secs_f64().max(1e-9);
    let total = total.max(applied);
    let percent = (applied * 100).checked_div(total).unwrap_or(100);
    let eta = if rate > 0.0 {
        format!("{:.0} s", (total - applied) as f64 / rate)
    } else {
        "?".into()
    };
    format!("{applied}/{total} events ({percent}%), {rate:.0} events/s, ETA {eta}")
}

/// The summary printed when a replay ends.
pub fn render_report(report: &ReplayReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let name = report.read_model.name();
    let _ = writeln!(
        out,
        "replayed {} events into {name} in {:.2} s ({:.0} events/s)",
        report.events,
        report.elapsed.as_secs_f64(),
        report.events_per_second()
    );
    let _ = writeln!(
        out,
        "rebuilt table: {} rows, up to position {} (tx {})",
        report.rows, report.cursor.position, report.cursor.tx_id.0
    );
    let _ = writeln!(
        out,
        "projector paused for {:.0} ms ({} events applied meanwhile)",
        report.paused.as_secs_f64() * 1000.0,
        report.caught_up
    );
    match (&report.diff, report.swapped) {
        (_, true) => {
            let _ = writeln!(
                out,
                "swapped in: {name} is the rebuilt table; checkpoint moved"
            );
        }
        (Some(diff), false) => {
            let _ = writeln!(
                out,
                "dry run: {} added, {} removed, {} changed vs live; nothing swapped, shadow dropped",
                diff.added, diff.removed, diff.changed
            );
            for (id, change) in &diff.examples {
                let _ = writeln!(out, "  {:8} {id}", change.as_str());
            }
        }
        (None, false) => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_give_rate_and_eta() {
        assert_eq!(
            progress_line(350_000, 1_000_000, Duration::from_secs(2)),
            "350000/1000000 events (35%), 175000 events/s, ETA 4 s"
        );
        assert_eq!(
            progress_line(0, 0, Duration::from_secs(1)),
            "0/0 events (100%), 0 events/s, ETA ?"
        );
    }
}
