//! The verdict, checked against the server itself once the faults are over:
//! every bot's cache equals the server's SQL answer for its subscriptions,
//! every acknowledged action ran exactly once (the module's own `action_log`,
//! one row per applied sequence number), every move that was not rolled back
//! ran exactly once (the player's `moves_applied`), and nothing acknowledged
//! was lost. The server's HTTP SQL endpoint is the oracle (straight to the
//! server, not through the proxy).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use spacelink::connection::sats::ProductValue;
use spacelink::connection::sats_json::product_from_json;
use spacelink::ModuleSchema;

use crate::bot::Bot;
use crate::game::{self, ActionLog, Player};
use crate::ledger::LedgerCheck;
use crate::resources::ResourceCheck;

/// The server's HTTP API, as the oracle.
#[derive(Debug, Clone)]
pub struct Oracle {
    url: String,
    database: String,
    token: String,
}

/// What asking the oracle can go wrong with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OracleError {
    /// The request failed.
    #[error("{what}: {reason}")]
    Http {
        /// Which request.
        what: String,
        /// Why.
        reason: String,
    },
    /// The answer is not what the server answers.
    #[error("{0}")]
    Answer(String),
}

fn http(what: &str, e: impl std::fmt::Display) -> OracleError {
    OracleError::Http { what: what.to_string(), reason: e.to_string() }
}

impl Oracle {
    /// An identity of its own on `url` (blocking).
    pub fn new(url: &str, database: &str) -> Result<Self, OracleError> {
        let body = ureq::post(&format!("{url}/v1/identity"))
            .timeout(Duration::from_secs(10))
            .call()
            .map_err(|e| http("POST /v1/identity", e))?
            .into_string()
            .map_err(|e| http("POST /v1/identity", e))?;
        let json: serde_json::Value = serde_json::from_str(&body).map_err(|e| OracleError::Answer(e.to_string()))?;
        let token = json["token"].as_str().ok_or_else(|| OracleError::Answer("no token in /v1/identity".into()))?;
        Ok(Oracle { url: url.to_string(), database: database.to_string(), token: token.to_string() })
    }

    /// The rows of `query` as the server writes them (SATS-JSON arrays; blocking).
    pub fn sql_json(&self, query: &str) -> Result<Vec<Vec<serde_json::Value>>, OracleError> {
        let what = format!("SQL `{query}`");
        let body = ureq::post(&format!("{}/v1/database/{}/sql", self.url, self.database))
            .timeout(Duration::from_secs(10))
            .set("Authorization", &format!("Bearer {}", self.token))
            .send_string(query)
            .map_err(|e| http(&what, e))?
            .into_string()
            .map_err(|e| http(&what, e))?;
        let json: serde_json::Value = serde_json::from_str(&body).map_err(|e| OracleError::Answer(e.to_string()))?;
        let rows = json.get(0).and_then(|r| r["rows"].as_array()).cloned().unwrap_or_default();
        Ok(rows.into_iter().map(|r| r.as_array().cloned().unwrap_or_default()).collect())
    }

    /// The rows `query` selects from `table`, in BSATN (blocking).
    pub fn rows(&self, schema: &ModuleSchema, table: &str, query: &str) -> Result<Vec<Vec<u8>>, OracleError> {
        let ty = &schema.table(table).ok_or_else(|| OracleError::Answer(format!("no table {table}")))?.row_type;
        self.sql_json(query)?
            .into_iter()
            .map(|row| {
                let value: ProductValue = product_from_json(ty, &serde_json::Value::Array(row))
                    .map_err(|e| OracleError::Answer(e.to_string()))?;
                spacelink::__codegen::bsatn::to_vec(&value).map_err(|e| OracleError::Answer(e.to_string()))
            })
            .collect()
    }

    /// Typed rows of `query` on `table`.
    pub fn typed<T: for<'de> spacelink::connection::sats::de::Deserialize<'de>>(
        &self,
        schema: &ModuleSchema,
        table: &str,
        query: &str,
    ) -> Result<Vec<T>, OracleError> {
        self.rows(schema, table, query)?
            .iter()
            .map(|b| spacelink::__codegen::bsatn::from_slice(b).map_err(|e| OracleError::Answer(e.to_string())))
            .collect()
    }

    /// Calls `reducer` with JSON arguments (blocking).
    pub fn call(&self, reducer: &str, args: &str) -> Result<(), OracleError> {
        let what = format!("call {reducer}");
        ureq::post(&format!("{}/v1/database/{}/call/{reducer}", self.url, self.database))
            .timeout(Duration::from_secs(10))
            .set("Authorization", &format!("Bearer {}", self.token))
            .set("Content-Type", "application/json")
            .send_string(args)
            .map_err(|e| http(&what, e))?;
        Ok(())
    }
}

/// One bot's checks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BotVerdict {
    /// The bot.
    pub name: String,
    /// Whether its cache equals the server's answer for its subscriptions.
    pub cache_equal: bool,
    /// Rows in its cache (subscribed tables).
    pub cache_rows: usize,
    /// What differs, if anything (per table: cached vs server rows).
    pub cache_diff: Vec<String>,
    /// Its actions against the action log.
    pub actions: LedgerCheck,
    /// Actions the server applied for it.
    pub actions_applied: usize,
    /// Moves sent and not rolled back.
    pub moves_expected: u64,
    /// Moves the server applied (`player.moves_applied`).
    pub moves_applied: Option<u64>,
}

impl BotVerdict {
    /// Whether all its checks passed.
    pub fn ok(&self) -> bool {
        self.cache_equal && self.actions.ok() && self.moves_applied == Some(self.moves_expected)
    }
}

/// The whole verdict.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    /// Whether everything passed.
    pub ok: bool,
    /// Per bot.
    pub bots: Vec<BotVerdict>,
    /// Problems that are not one bot's (the oracle failing, say).
    pub problems: Vec<String>,
    /// Caches equal to the server's.
    pub caches_equal: usize,
    /// Acknowledged (committed) actions checked.
    pub actions_acknowledged: u64,
    /// Acknowledged actions the server has no record of.
    pub actions_missing: usize,
    /// Actions applied twice.
    pub actions_duplicated: usize,
    /// Actions applied that were refused or never sent.
    pub actions_unexpected: usize,
    /// Moves that should have run.
    pub moves_expected: u64,
    /// Moves that did (all bots).
    pub moves_applied: u64,
    /// How long the check took.
    pub took_ms: f64,
    /// The process's memory and file descriptors (a soak only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceCheck>,
}

impl Verdict {
    /// The demo's last line: `verdict: ok (...)` or `verdict: FAILED (...)`.
    pub fn line(&self) -> String {
        let bots = self.bots.len();
        let figures = format!(
            "{} of {bots} caches equal the server's; {} acknowledged actions ran once each, {} missing, {} twice, {} unexpected; {} of {} moves applied",
            self.caches_equal,
            self.actions_acknowledged,
            self.actions_missing,
            self.actions_duplicated,
            self.actions_unexpected,
            self.moves_applied,
            self.moves_expected,
        );
        let figures = match &self.resources {
            Some(r) => format!("{figures}; {}", r.summary()),
            None => figures,
        };
        if self.ok {
            format!("verdict: ok ({figures})")
        } else {
            let why = self.problems.first().map(|p| format!("; {p}")).unwrap_or_default();
            format!("verdict: FAILED ({figures}{why})")
        }
    }
}

impl Verdict {
    /// Adds the judgement of the process's memory and descriptors: a failure fails the verdict.
    pub fn add_resources(&mut self, check: ResourceCheck) {
        if !check.ok {
            self.ok = false;
            self.problems.extend(check.problems.iter().cloned());
        }
        self.resources = Some(check);
    }
}

/// How long the caches get to equal the server's.
const CONVERGE_WITHIN: Duration = Duration::from_secs(10);

/// Compares one bot's cache with the server's answer for its subscriptions;
/// the differences, per table (empty: equal), and the rows compared.
fn compare_cache(oracle: &Oracle, schema: &ModuleSchema, bot: &Bot) -> Result<(Vec<String>, usize), OracleError> {
    let Some(me) = bot.identity() else { return Ok((vec!["never connected".into()], 0)) };
    let mut diffs = Vec::new();
    let mut rows = 0;
    for query in game::queries(bot.config().map_id, me) {
        let Some(table) = game::table_of(&query) else { continue };
        let mut server: Vec<Vec<u8>> = oracle.rows(schema, table, &query)?;
        let mut cached: Vec<Vec<u8>> = bot
            .client()
            .sync()
            .map(|sync| sync.cache().rows(table))
            .unwrap_or_default()
            .iter()
            .map(|r| r.bytes().to_vec())
            .collect();
        server.sort_unstable();
        cached.sort_unstable();
        rows += cached.len();
        if server != cached {
            let only_cached = cached.iter().filter(|r| server.binary_search(r).is_err()).count();
            let only_server = server.iter().filter(|r| cached.binary_search(r).is_err()).count();
            diffs.push(format!(
                "{table}: {} cached, {} on the server ({only_cached} only cached, {only_server} only on the server)",
                cached.len(),
                server.len()
            ));
        }
    }
    Ok((diffs, rows))
}

/// Checks every bot against the server (blocking: run it off the runtime's
/// threads). The bots stay connected; nothing else should write meanwhile.
pub fn check(oracle: &Oracle, schema: &ModuleSchema, bots: &[Bot]) -> Verdict {
    let began = Instant::now();
    let mut verdict = Verdict::default();
    let mut per_bot: Vec<BotVerdict> = bots
        .iter()
        .map(|b| {
            let s = crate::stats::lock(b.stats());
            let p = b.prediction();
            BotVerdict {
                name: s.name.clone(),
                moves_expected: p.predicted.saturating_sub(p.rejected),
                ..BotVerdict::default()
            }
        })
        .collect();

    // The caches, given time to converge.
    let deadline = Instant::now() + CONVERGE_WITHIN;
    let mut left: Vec<usize> = (0..bots.len()).collect();
    while !left.is_empty() {
        let mut still = Vec::new();
        for i in left {
            match compare_cache(oracle, schema, &bots[i]) {
                Ok((diffs, rows)) => {
                    per_bot[i].cache_rows = rows;
                    per_bot[i].cache_equal = diffs.is_empty();
                    if !diffs.is_empty() {
                        per_bot[i].cache_diff = diffs;
                        still.push(i);
                    }
                }
                Err(e) => {
                    verdict.problems.push(format!("the oracle failed: {e}"));
                    still.clear();
                    break;
                }
            }
        }
        left = still;
        if Instant::now() >= deadline || !verdict.problems.is_empty() {
            break;
        }
        if !left.is_empty() {
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    // The actions and moves, from the module's own records.
    let logs: Result<Vec<ActionLog>, _> = oracle.typed(schema, "action_log", "SELECT * FROM action_log");
    let players: Result<Vec<Player>, _> = oracle.typed(schema, "player", "SELECT * FROM player");
    match (logs, players) {
        (Ok(logs), Ok(players)) => {
            let mut applied: BTreeMap<_, Vec<u32>> = BTreeMap::new();
            for log in logs {
                applied.entry(log.owner).or_default().push(log.seq);
            }
            for (bot, v) in bots.iter().zip(per_bot.iter_mut()) {
                let Some(me) = bot.identity() else { continue };
                let seqs = applied.get(&me).cloned().unwrap_or_default();
                v.actions_applied = seqs.len();
                v.actions = bot.ledger().check(&seqs);
                v.moves_applied = players.iter().find(|p| p.identity == me).map(|p| u64::from(p.moves_applied));
            }
        }
        (Err(e), _) | (_, Err(e)) => verdict.problems.push(format!("the oracle failed: {e}")),
    }

    for (bot, v) in bots.iter().zip(&per_bot) {
        verdict.caches_equal += usize::from(v.cache_equal);
        verdict.actions_acknowledged += bot.ledger().totals().committed;
        verdict.actions_missing += v.actions.missing.len();
        verdict.actions_duplicated += v.actions.duplicates.len();
        verdict.actions_unexpected += v.actions.unexpected.len();
        verdict.moves_expected += v.moves_expected;
        verdict.moves_applied += v.moves_applied.unwrap_or(0);
        if !v.ok() {
            verdict.problems.push(describe(v));
        }
    }
    verdict.ok = verdict.problems.is_empty() && !per_bot.is_empty();
    if per_bot.is_empty() {
        verdict.problems.push("no bot ran".into());
    }
    verdict.bots = per_bot;
    verdict.took_ms = began.elapsed().as_secs_f64() * 1000.0;
    verdict
}

/// What went wrong for one bot, in a line.
fn describe(v: &BotVerdict) -> String {
    let mut parts = Vec::new();
    if !v.cache_equal {
        parts.push(format!("cache differs ({})", v.cache_diff.join("; ")));
    }
    if !v.actions.ok() {
        parts.push(format!(
            "actions: {} missing, {} twice, {} unexpected",
            v.actions.missing.len(),
            v.actions.duplicates.len(),
            v.actions.unexpected.len()
        ));
    }
    if v.moves_applied != Some(v.moves_expected) {
        parts.push(format!(
            "moves: {} applied, {} expected",
            v.moves_applied.map_or("none".into(), |m| m.to_string()),
            v.moves_expected
        ));
    }
    format!("{}: {}", v.name, parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_line_has_one_fixed_form() {
        let mut v = Verdict {
            ok: true,
            caches_equal: 2,
            actions_acknowledged: 10,
            moves_expected: 5,
            moves_applied: 5,
            ..Verdict::default()
        };
        v.bots = vec![BotVerdict::default(), BotVerdict::default()];
        assert!(v.line().starts_with("verdict: ok (2 of 2 caches equal the server's; 10 acknowledged actions"));
        v.ok = false;
        v.problems.push("bot-1: cache differs".into());
        assert!(v.line().starts_with("verdict: FAILED (2 of 2 caches"));
        assert!(v.line().ends_with("; bot-1: cache differs)"));
    }

    #[test]
    fn a_soak_adds_its_memory_and_descriptors_to_the_line_and_a_leak_fails_it() {
        let mut v = Verdict { ok: true, ..Verdict::default() };
        let check = ResourceCheck { ok: true, fds_baseline: 40, fds_end: 41, ..ResourceCheck::default() };
        v.add_resources(check.clone());
        assert!(v.ok && v.line().ends_with("; RSS slope unknown; fds 40 at the start, 41 at the end)"), "{}", v.line());
        v.add_resources(ResourceCheck { ok: false, problems: vec!["file descriptors grow".into()], ..check });
        assert!(!v.ok && v.line().ends_with("; file descriptors grow)"), "{}", v.line());
    }

    #[test]
    fn a_bot_passes_only_if_every_check_does() {
        let mut v =
            BotVerdict { cache_equal: true, moves_expected: 3, moves_applied: Some(3), ..BotVerdict::default() };
        assert!(v.ok());
        v.moves_applied = Some(4);
        assert!(!v.ok(), "a move ran twice");
        v.moves_applied = Some(3);
        v.actions.missing.push(7);
        assert!(!v.ok());
        assert!(describe(&v).contains("1 missing"));
    }
}
