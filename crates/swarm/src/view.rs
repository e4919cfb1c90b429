//! Watching a run: on a terminal, a live view (ratatui) redrawn a few times a
//! second: per bot its state, latency, updates per second, prediction
//! accuracy, corrections, reconnects and queue depth, the phase and the fault
//! now active, and a total line. Elsewhere (CI, a pipe) a compact progress
//! line every few seconds instead.

use std::io::{self, Stdout, Write as _};
use std::time::{Duration, Instant};

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Terminal;

use crate::stats::{BotState, BotStats, Totals};

/// What the view shows at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Since the start.
    pub elapsed: Duration,
    /// The planned length.
    pub duration: Duration,
    /// The profile.
    pub profile: String,
    /// The phase's name.
    pub phase: String,
    /// The fault on, if any.
    pub fault: Option<String>,
    /// What the run does now (running, settling, checking).
    pub stage: String,
    /// Each bot.
    pub bots: Vec<BotStats>,
    /// Call round trip median over the last second, ms.
    pub p50_ms: Option<f64>,
}

impl Snapshot {
    /// The bots added up.
    pub fn totals(&self) -> Totals {
        Totals::of(&self.bots)
    }
}

/// The progress line printed when the output is not a terminal.
pub fn progress_line(s: &Snapshot) -> String {
    let t = s.totals();
    let accuracy = if t.checked == 0 { 100.0 } else { t.accurate as f64 * 100.0 / t.checked as f64 };
    let updates: f64 = s.bots.iter().map(|b| b.updates_per_s).sum();
    format!(
        "[{:>3.0}s/{:.0}s] {} | {}{} | bots {}/{} up | p50 {} | {:.0} rows/s | accuracy {accuracy:.1}% | {} corrections | {} reconnects | queue {}",
        s.elapsed.as_secs_f64(),
        s.duration.as_secs_f64(),
        s.stage,
        s.phase,
        s.fault.as_ref().map(|f| format!(": {f}")).unwrap_or_default(),
        t.connected,
        s.bots.len(),
        s.p50_ms.map_or("-".into(), |v| format!("{v:.0} ms")),
        updates,
        t.corrections,
        t.reconnects,
        t.queue,
    )
}

/// How often the plain output prints a line.
pub const PLAIN_EVERY: Duration = Duration::from_secs(3);

/// Where the view goes: a live view on the terminal's alternate screen, or
/// progress lines on standard output.
pub struct View {
    live: Option<Box<Terminal<CrosstermBackend<Stdout>>>>,
    /// When the last progress line was printed.
    last: Option<Instant>,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View").field("live", &self.live.is_some()).finish()
    }
}

impl View {
    /// The live view if `live` (standard output is a terminal), else progress lines.
    /// The live view leaves the terminal's line discipline alone, so Ctrl-C still interrupts.
    pub fn new(live: bool) -> Self {
        let mut view = View { live: None, last: None };
        if live && execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide).is_ok() {
            match Terminal::new(CrosstermBackend::new(io::stdout())) {
                Ok(t) => view.live = Some(Box::new(t)),
                Err(_) => {
                    let _ = execute!(io::stdout(), terminal::LeaveAlternateScreen, cursor::Show);
                }
            }
        }
        view
    }

    /// Shows `s` (a line at most every [`PLAIN_EVERY`] in plain mode).
    pub fn show(&mut self, s: &Snapshot) {
        if let Some(t) = &mut self.live {
            let _ = t.draw(|f| draw(f, s));
        } else if self.last.is_none_or(|l| l.elapsed() >= PLAIN_EVERY) {
            self.last = Some(Instant::now());
            println!("{}", progress_line(s));
            let _ = io::stdout().flush();
        }
    }

    /// Leaves the alternate screen, if on it (the last frame stays on the screen as text).
    pub fn close(&mut self) {
        if self.live.take().is_some() {
            let _ = execute!(io::stdout(), terminal::LeaveAlternateScreen, cursor::Show);
            self.last = Some(Instant::now());
        }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        self.close();
    }
}

fn state_style(state: BotState) -> Style {
    match state {
        BotState::Playing => Style::default().fg(Color::Green),
        BotState::Settling => Style::default().fg(Color::Cyan),
        BotState::Reconnecting | BotState::Connecting | BotState::Joining => Style::default().fg(Color::Yellow),
        BotState::Failed => Style::default().fg(Color::Red),
    }
}

fn draw(f: &mut ratatui::Frame<'_>, s: &Snapshot) {
    let [head, body, foot] =
        Layout::vertical([Constraint::Length(3), Constraint::Min(3), Constraint::Length(3)]).areas(f.area());
    let fault = s.fault.clone().unwrap_or_else(|| "none".into());
    let title = Line::from(vec![
        Span::styled("spacelink swarm ", Style::default().add_modifier(Modifier::BOLD)),
        Span::raw(format!(
            "| {} bots | profile {} | {:.0}/{:.0} s | {} | phase ",
            s.bots.len(),
            s.profile,
            s.elapsed.as_secs_f64(),
            s.duration.as_secs_f64(),
            s.stage
        )),
        Span::styled(s.phase.clone(), Style::default().fg(Color::Cyan)),
        Span::raw(" | fault now: "),
        Span::styled(fault, Style::default().fg(if s.fault.is_some() { Color::Red } else { Color::Green })),
    ]);
    f.render_widget(Paragraph::new(title).block(Block::default().borders(Borders::ALL)), head);

    let header =
        Row::new(["bot", "map", "state", "latency", "upd/s", "accuracy", "corr", "reconn", "queue", "actions ok/sent"])
            .style(Style::default().add_modifier(Modifier::BOLD));
    let rows = s.bots.iter().map(|b| {
        Row::new(vec![
            Cell::from(b.name.clone()),
            Cell::from(b.map_id.to_string()),
            Cell::from(b.state.word()).style(state_style(b.state)),
            Cell::from(b.latency_ms.map_or("-".into(), |l| format!("{l:.0} ms"))),
            Cell::from(format!("{:.0}", b.updates_per_s)),
            Cell::from(format!("{:.1}%", b.accuracy() * 100.0)),
            Cell::from(b.corrections.to_string()),
            Cell::from(b.reconnects.to_string()),
            Cell::from(b.queue.to_string()),
            Cell::from(format!("{}/{}", b.calls.committed, b.calls.sent)),
        ])
    });
    let widths = [
        Constraint::Length(10),
        Constraint::Length(4),
        Constraint::Length(13),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(16),
    ];
    f.render_widget(Table::new(rows, widths).header(header).block(Block::default().borders(Borders::ALL)), body);
    f.render_widget(
        Paragraph::new(progress_line(s)).block(Block::default().borders(Borders::ALL).title(" total ")),
        foot,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_says_where_the_run_is() {
        let bots = vec![
            BotStats {
                name: "bot-1".into(),
                state: BotState::Playing,
                updates_per_s: 40.0,
                checked: 10,
                accurate: 9,
                ..BotStats::default()
            },
            BotStats {
                name: "bot-2".into(),
                state: BotState::Reconnecting,
                reconnects: 2,
                queue: 3,
                ..BotStats::default()
            },
        ];
        let s = Snapshot {
            elapsed: Duration::from_secs(12),
            duration: Duration::from_secs(60),
            profile: "chaos".into(),
            phase: "bad".into(),
            fault: Some("connections cut".into()),
            stage: "running".into(),
            bots,
            p50_ms: Some(123.4),
        };
        let line = progress_line(&s);
        assert!(
            line.starts_with("[ 12s/60s] running | bad: connections cut | bots 1/2 up | p50 123 ms | 40 rows/s"),
            "{line}"
        );
        assert!(line.contains("accuracy 90.0%") && line.contains("2 reconnects") && line.contains("queue 3"), "{line}");
    }
}
