//! The bot engine: one bot is one real [`spacelink::Client`] with its own
//! identity, driven like a game drives it: [`Bot::tick`] once per input
//! period (it calls `frame_tick`, hears what happened, and sends the next
//! input), [`Bot::sample`] once a second (the prediction's and the reducer
//! queue's figures). A bot joins its map, walks with client-side prediction
//! (`Client::predict`, one sequenced `move_player` per tick) towards the
//! nearest item or entity, and plays sequenced actions (`act`: pick up,
//! attack, spawn) whose answers it keeps in its [`Ledger`].
//!
//! Many bots run in one process: each client has its own actor thread; the
//! bots themselves are light tasks ([`drive`]) on one tokio runtime.

use std::sync::Arc;
use std::time::{Duration, Instant};

use spacelink::connection::lib::Identity;
use spacelink::prediction::{Position, PredictionConfig, PredictionHandle, PredictionStats, Walk};
use spacelink::reducers::Outcome;
use spacelink::{Client, ConnectionState, Event, ModuleSchema, ReducerError};
use tokio::sync::watch;

use crate::game::{self, ActArgs, Goal, JoinArgs};
use crate::ledger::{Answer, Ledger};
use crate::rng::{unit, SplitMix64};
use crate::stats::{lock, BotState, SharedStats, SharedTape};

/// What a bot needs to start.
#[derive(Debug, Clone)]
pub struct BotConfig {
    /// Its name (its player's too).
    pub name: String,
    /// The map it joins.
    pub map_id: u32,
    /// The server to connect to (the fault proxy's URL).
    pub url: String,
    /// The database.
    pub database: String,
    /// The module's schema, read once for all bots.
    pub schema: Arc<ModuleSchema>,
    /// Its own pseudo-random sequence (overshooting steps, action timing).
    pub seed: u64,
    /// One input per this period (default 100 ms: 10 moves a second).
    pub input_every: Duration,
    /// One action per this period (default 500 ms).
    pub act_every: Duration,
}

/// What the bots are told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Move and act.
    Play,
    /// No more inputs: catch up.
    Settle,
    /// Stop ticking (the run is over).
    Stop,
}

/// How long a bot waits before trying `join` again after a failure.
const JOIN_RETRY: Duration = Duration::from_secs(1);
/// How often a bot picks a new goal while walking.
const GOAL_EVERY: Duration = Duration::from_secs(1);
/// One step in this many overshoots (the server clamps it: a correction).
const OVERSHOOT_ONE_IN: u64 = 25;
/// One action in this many is a spawn when nothing is in reach.
const SPAWN_ONE_IN: u64 = 6;

/// One bot.
pub struct Bot {
    config: BotConfig,
    client: Client,
    stats: SharedStats,
    tape: SharedTape,
    started: Instant,
    identity: Option<Identity>,
    join: Option<u64>,
    join_after: Option<Instant>,
    joined: bool,
    me: Option<PredictionHandle<Walk>>,
    ledger: Ledger,
    goal: Option<Goal>,
    goal_at: Option<Instant>,
    next_act: Instant,
    down_since: Option<Instant>,
    rows_since_sample: u64,
    last_sample: Instant,
    rng: SplitMix64,
    actions: u64,
    prediction: PredictionStats,
}

impl std::fmt::Debug for Bot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bot").field("name", &self.config.name).field("joined", &self.joined).finish_non_exhaustive()
    }
}

impl Bot {
    /// Starts the bot's client (it connects on its own thread; this returns at once).
    pub fn start(
        config: BotConfig,
        stats: SharedStats,
        tape: SharedTape,
        started: Instant,
    ) -> Result<Self, spacelink::ClientError> {
        let client = Client::builder()
            .with_uri(&config.url)
            .with_database(&config.database)
            .with_schema(config.schema.clone())
            .with_row_types(game::row_types())
            .build()?;
        {
            let mut s = lock(&stats);
            s.name = config.name.clone();
            s.map_id = config.map_id;
            s.state = BotState::Connecting;
        }
        let now = Instant::now();
        let rng = SplitMix64(config.seed | 1);
        Ok(Bot {
            next_act: now + config.act_every.mul_f64(0.5 + unit(rng.0)),
            config,
            client,
            stats,
            tape,
            started,
            identity: None,
            join: None,
            join_after: None,
            joined: false,
            me: None,
            ledger: Ledger::new(),
            goal: None,
            goal_at: None,
            down_since: None,
            rows_since_sample: 0,
            last_sample: now,
            rng,
            actions: 0,
            prediction: PredictionStats::default(),
        })
    }

    /// Its client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Its identity, once connected.
    pub fn identity(&self) -> Option<Identity> {
        self.identity
    }

    /// Its ledger of actions.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Its configuration.
    pub fn config(&self) -> &BotConfig {
        &self.config
    }

    /// The prediction's counters at the last sample.
    pub fn prediction(&self) -> PredictionStats {
        self.prediction
    }

    /// Its figures.
    pub fn stats(&self) -> &SharedStats {
        &self.stats
    }

    /// One frame: hears what happened, then (in [`Mode::Play`]) moves and acts.
    pub fn tick(&mut self, mode: Mode) {
        let now = Instant::now();
        self.hear(now);
        if self.joined && self.me.is_none() {
            if let Some(identity) = self.identity {
                self.me = self
                    .client
                    .predict(game::walk(self.config.map_id), prediction_config(), game::my_player(identity))
                    .ok();
            }
        }
        if self.identity.is_some() && !self.joined && self.join.is_none() && self.join_after.is_none_or(|t| now >= t) {
            self.send_join();
        }
        match mode {
            Mode::Play => self.play(now),
            Mode::Settle | Mode::Stop => {
                let mut s = lock(&self.stats);
                if s.state == BotState::Playing {
                    s.state = BotState::Settling;
                }
            }
        }
    }

    /// Reads the prediction's and the queue's figures (once a second).
    pub async fn sample(&mut self) {
        let wait = Duration::from_millis(500);
        if let Some(me) = &self.me {
            if let Ok(Ok(status)) = tokio::time::timeout(wait, me.status()).await {
                self.prediction = status.stats;
            }
        }
        let queue = match tokio::time::timeout(wait, self.client.reducers().handle().status()).await {
            Ok(Ok(q)) => Some(q.queued + q.in_flight),
            _ => None,
        };
        let now = Instant::now();
        let secs = now.duration_since(self.last_sample).as_secs_f64().max(1e-3);
        let mut s = lock(&self.stats);
        s.updates_per_s = self.rows_since_sample as f64 / secs;
        self.rows_since_sample = 0;
        self.last_sample = now;
        if let Some(q) = queue {
            s.queue = q;
        }
        let p = self.prediction;
        s.moves = p.predicted;
        s.moves_rejected = p.rejected;
        s.checked = p.checked;
        s.accurate = p.accurate;
        s.corrections = p.corrections;
        s.calls = self.ledger.totals();
        drop(s);
        let caught_up = self.caught_up();
        lock(&self.stats).caught_up = caught_up;
    }

    /// Whether everything it sent was answered and its prediction caught up.
    pub fn caught_up(&self) -> bool {
        let confirmed = self.me.as_ref().and_then(|me| me.with_view(|v| v.confirmed_seq.unwrap_or(0) >= v.newest_seq));
        self.ledger.pending() == 0 && confirmed.unwrap_or(true) && lock(&self.stats).queue == 0
    }

    /// Stops its client.
    pub fn shutdown(&self) {
        if let Some(me) = &self.me {
            me.shutdown();
        }
        self.client.shutdown();
    }

    fn hear(&mut self, now: Instant) {
        let t = now.duration_since(self.started).as_secs_f64();
        let mut rows = 0u64;
        let mut answers = Vec::new();
        let mut connected = None;
        let mut lost = false;
        let mut latency = None;
        for event in self.client.frame_tick() {
            match event {
                Event::Row(_) => rows += 1,
                Event::Connected { identity, .. } => connected = Some(*identity),
                Event::StateChanged { from: ConnectionState::Connected, to, .. }
                    if *to != ConnectionState::Connected =>
                {
                    lost = true;
                }
                Event::HealthChanged(h) => latency = h.latency,
                Event::ReducerResult { ticket, result, .. } => answers.push((*ticket, answer_of(result))),
                _ => {}
            }
        }
        self.rows_since_sample += rows;
        let mut s = lock(&self.stats);
        s.rows += rows;
        if let Some(l) = latency {
            s.latency_ms = Some(l.as_secs_f64() * 1000.0);
        }
        if lost {
            self.down_since.get_or_insert(now);
            s.state = BotState::Reconnecting;
        }
        if let Some(identity) = connected {
            if self.identity.is_none() {
                self.identity = Some(identity);
                s.identity = Some(identity.to_hex().to_string());
                s.state = BotState::Joining;
                // Returns at once; its outcome is an event (and in the status).
                let _set = self.client.subscribe(&game::queries(self.config.map_id, identity));
            } else {
                s.reconnects += 1;
                s.state = if self.joined { BotState::Playing } else { BotState::Joining };
            }
            if let Some(since) = self.down_since.take() {
                lock(&self.tape).recoveries.push((t, now.duration_since(since).as_secs_f64() * 1000.0));
            }
        }
        drop(s);
        for (ticket, (answer, attempts)) in answers {
            if Some(ticket) == self.join {
                self.join = None;
                if answer == Answer::Committed {
                    self.joined = true;
                    lock(&self.stats).state = BotState::Playing;
                } else {
                    self.join_after = Some(now + JOIN_RETRY);
                }
                continue;
            }
            self.ledger.answered(ticket, answer, attempts);
        }
    }

    fn send_join(&mut self) {
        let args = JoinArgs { name: self.config.name.clone(), map_id: self.config.map_id };
        let call = self.client.reducers().call("join", &args);
        self.join = Some(call.ticket());
        self.join_after = None;
    }

    fn play(&mut self, now: Instant) {
        let Some(me) = self.me.clone() else { return };
        let Some(here) = me.shown() else { return };
        if self.goal_at.is_none_or(|at| now.duration_since(at) >= GOAL_EVERY) || self.reached(here) {
            self.goal = game::pick_goal(&self.client, self.config.map_id, here).or_else(|| Some(self.wander()));
            self.goal_at = Some(now);
        }
        let overshoot = self.roll(OVERSHOOT_ONE_IN);
        if let Some(goal) = self.goal {
            me.predict(game::step_towards(here, goal.at(), overshoot));
        }
        if now >= self.next_act {
            self.next_act = now + self.config.act_every;
            self.actions += 1;
            let spawn = self.roll(SPAWN_ONE_IN);
            if let Some(action) = game::action_for(self.goal, here, spawn) {
                let seq = self.ledger.next_seq();
                let call = self.client.reducers().call_sequenced(game::ACT_REDUCER, &ActArgs { seq, action }, seq);
                self.ledger.sent(call.ticket(), seq);
                // The latency a player feels: from the call to its answer, waits and resends included.
                let (tape, started, made) = (self.tape.clone(), self.started, Instant::now());
                tokio::spawn(async move {
                    if call.await.is_ok() {
                        let answered = Instant::now();
                        let ms = answered.duration_since(made).as_secs_f64() * 1000.0;
                        lock(&tape).round_trip(answered.duration_since(started).as_secs_f64(), ms);
                    }
                });
            }
        }
    }

    fn reached(&self, here: Position) -> bool {
        self.goal
            .is_some_and(|g| matches!(g, Goal::Wander { .. }) && (g.at().x - here.x).hypot(g.at().y - here.y) < 0.5)
    }

    fn wander(&mut self) -> Goal {
        let size = game::map_size(self.config.map_id);
        let x = unit(self.next_rng()) as f32 * size;
        let y = unit(self.next_rng()) as f32 * size;
        Goal::Wander { at: Position { x, y } }
    }

    fn roll(&mut self, one_in: u64) -> bool {
        self.next_rng().is_multiple_of(one_in)
    }

    fn next_rng(&mut self) -> u64 {
        self.rng.next_u64()
    }
}

/// Prediction with room for a long outage (a server restart at 10 inputs a second).
fn prediction_config() -> PredictionConfig {
    PredictionConfig { max_prediction_history: 2048, ..PredictionConfig::default() }
}

/// A call's result as the ledger files it, with how many times it was sent.
fn answer_of(result: &Result<spacelink::ReducerResult, ReducerError>) -> (Answer, u32) {
    match result {
        Ok(r) => {
            let answer = match &r.outcome {
                Outcome::Committed => Answer::Committed,
                Outcome::Failed(reason) => Answer::Refused(reason.clone()),
                Outcome::OutOfEnergy => Answer::Refused("out of energy".into()),
            };
            (answer, r.attempts)
        }
        // The module ran it and refused it (nothing committed): a refusal, not a loss.
        Err(ReducerError::Failed { message, .. }) => (Answer::Refused(message.clone()), 1),
        Err(ReducerError::OutOfEnergy { .. }) => (Answer::Refused("out of energy".into()), 1),
        Err(e) => (Answer::Lost(e.to_string()), 1),
    }
}

/// Drives `bot` until told to stop: a tick per input period, a sample a
/// second; returns the bot (for the verdict).
pub async fn drive(mut bot: Bot, mut mode: watch::Receiver<Mode>) -> Bot {
    let mut tick = tokio::time::interval(bot.config.input_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_sample = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = mode.changed() => if changed.is_err() { break },
        }
        let now_mode = *mode.borrow();
        if now_mode == Mode::Stop {
            break;
        }
        bot.tick(now_mode);
        if last_sample.elapsed() >= Duration::from_secs(1) {
            last_sample = Instant::now();
            bot.sample().await;
        }
    }
    bot.sample().await;
    bot
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_filed_as_the_ledger_wants_them() {
        let lost = answer_of(&Err(ReducerError::Cancelled));
        assert!(matches!(lost, (Answer::Lost(_), 1)));
        let refused = answer_of(&Err(ReducerError::Failed { reducer: "act".into(), message: "gone".into() }));
        assert!(matches!(refused, (Answer::Refused(ref m), 1) if m == "gone"), "ran and refused: not lost");
    }
}
