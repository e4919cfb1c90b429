//! A bot's ledger of sequenced calls: what it sent (by sequence number), what
//! the server acknowledged and how, and the check of all that against what
//! the server says it applied. Plain logic, no I/O.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The server ran it and committed its changes.
    Committed,
    /// The server ran it and the reducer refused (a game rule): nothing changed.
    Refused(String),
    /// No answer will come (cancelled, dropped, queue full, outcome unknown).
    Lost(String),
}

/// A call on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    seq: u32,
}

/// Counts of a ledger (or of many, added up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CallTotals {
    /// Calls sent.
    pub sent: u64,
    /// Calls the server answered (committed or refused).
    pub acknowledged: u64,
    /// ... of which committed.
    pub committed: u64,
    /// ... of which refused by a game rule.
    pub refused: u64,
    /// Answered calls that were sent more than once (resent after a lost session).
    pub retried: u64,
    /// Calls that ended without an answer.
    pub lost: u64,
    /// Calls still waiting for their answer.
    pub pending: u64,
}

impl std::ops::AddAssign for CallTotals {
    fn add_assign(&mut self, o: Self) {
        self.sent += o.sent;
        self.acknowledged += o.acknowledged;
        self.committed += o.committed;
        self.refused += o.refused;
        self.retried += o.retried;
        self.lost += o.lost;
        self.pending += o.pending;
    }
}

/// What the server applied, compared with the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LedgerCheck {
    /// Committed calls the server has no record of (lost after the acknowledgement).
    pub missing: Vec<u32>,
    /// Sequence numbers the server applied more than once.
    pub duplicates: Vec<u32>,
    /// Sequence numbers the server applied that were refused or never sent.
    pub unexpected: Vec<u32>,
}

impl LedgerCheck {
    /// Whether everything matches.
    pub fn ok(&self) -> bool {
        self.missing.is_empty() && self.duplicates.is_empty() && self.unexpected.is_empty()
    }
}

/// One bot's sequenced calls, keyed by the ticket the client gave each.
#[derive(Debug, Default)]
pub struct Ledger {
    next_seq: u32,
    pending: BTreeMap<u64, Sent>,
    committed: BTreeSet<u32>,
    refused: BTreeSet<u32>,
    lost: BTreeSet<u32>,
    totals: CallTotals,
}

impl Ledger {
    /// An empty ledger; the first sequence number is 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next sequence number.
    pub fn next_seq(&mut self) -> u32 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Records call `seq`, sent with `ticket`.
    pub fn sent(&mut self, ticket: u64, seq: u32) {
        self.pending.insert(ticket, Sent { seq });
        self.totals.sent += 1;
        self.totals.pending += 1;
    }

    /// Records the answer to `ticket` after `attempts` sends; returns its
    /// sequence number (`None` for a ticket this ledger did not send).
    pub fn answered(&mut self, ticket: u64, answer: Answer, attempts: u32) -> Option<u32> {
        let Sent { seq } = self.pending.remove(&ticket)?;
        self.totals.pending -= 1;
        match answer {
            Answer::Committed | Answer::Refused(_) => {
                self.totals.acknowledged += 1;
                if attempts > 1 {
                    self.totals.retried += 1;
                }
                if answer == Answer::Committed {
                    self.totals.committed += 1;
                    self.committed.insert(seq);
                } else {
                    self.totals.refused += 1;
                    self.refused.insert(seq);
                }
            }
            Answer::Lost(_) => {
                self.totals.lost += 1;
                self.lost.insert(seq);
            }
        }
        Some(seq)
    }

    /// The counts so far.
    pub fn totals(&self) -> CallTotals {
        self.totals
    }

    /// Calls waiting for their answer.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Compares the ledger with the sequence numbers the server applied for
    /// this bot (each once, if all is well). A lost or still pending call may
    /// or may not have run; a refused one must not have.
    pub fn check(&self, applied: &[u32]) -> LedgerCheck {
        let mut seen = BTreeSet::new();
        let mut check = LedgerCheck::default();
        for &seq in applied {
            if !seen.insert(seq) {
                check.duplicates.push(seq);
            } else if !self.committed.contains(&seq) && !self.may_have_run(seq) {
                check.unexpected.push(seq);
            }
        }
        check.missing = self.committed.difference(&seen).copied().collect();
        check.duplicates.dedup();
        check
    }

    fn may_have_run(&self, seq: u32) -> bool {
        self.lost.contains(&seq) || self.pending.values().any(|s| s.seq == seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger_with(answers: &[Answer]) -> Ledger {
        let mut l = Ledger::new();
        for (i, a) in answers.iter().enumerate() {
            let seq = l.next_seq();
            l.sent(i as u64, seq);
            l.answered(i as u64, a.clone(), 1);
        }
        l
    }

    #[test]
    fn counts_follow_the_answers() {
        let mut l = ledger_with(&[Answer::Committed, Answer::Refused("far".into()), Answer::Lost("gone".into())]);
        let seq = l.next_seq();
        l.sent(9, seq);
        assert_eq!(l.answered(9, Answer::Committed, 3), Some(4));
        assert_eq!(l.answered(9, Answer::Committed, 1), None, "answered once");
        let t = l.totals();
        assert_eq!(
            (t.sent, t.acknowledged, t.committed, t.refused, t.lost, t.retried, t.pending),
            (4, 3, 2, 1, 1, 1, 0)
        );
    }

    #[test]
    fn what_the_server_applied_must_be_the_committed_calls_each_once() {
        let l = ledger_with(&[
            Answer::Committed,
            Answer::Refused("far".into()),
            Answer::Committed,
            Answer::Lost("x".into()),
        ]);
        assert!(l.check(&[1, 3]).ok());
        assert!(l.check(&[1, 3, 4]).ok(), "a lost call may have run");
        assert_eq!(l.check(&[1]).missing, vec![3]);
        assert_eq!(l.check(&[1, 3, 3]).duplicates, vec![3]);
        assert_eq!(l.check(&[1, 2, 3]).unexpected, vec![2], "a refused call ran");
        assert_eq!(l.check(&[1, 3, 7]).unexpected, vec![7], "never sent");
    }

    #[test]
    fn a_pending_call_may_have_run() {
        let mut l = Ledger::new();
        let seq = l.next_seq();
        l.sent(1, seq);
        assert!(l.check(&[]).ok());
        assert!(l.check(&[1]).ok());
        assert_eq!(l.pending(), 1);
    }
}
