//! # spacelink-swarm: many bot players on spacelink through a bad network
//!
//! What `cargo xtask demo` runs: N bots, each a real [`spacelink::Client`]
//! with its own identity, in one process, play guildmaster through a
//! fault-injecting proxy ([`spacelink_faultproxy`]) while named network
//! profiles ([`profile`]) are applied on a schedule ([`faults`]); a live view
//! watches ([`view`]); at the end the faults stop, the bots catch up, a
//! verdict is checked against the server itself ([`verdict`]) and a report
//! is written ([`report`]: HTML with SVG plots, and JSON).
//!
//! * [`bot`]: the bot engine (a bot = a client, its prediction, its ledger).
//! * [`ledger`]: what a bot sent and what was acknowledged.
//! * [`game`]: everything that knows guildmaster.
//! * [`stats`]: live figures and the timeline.
//! * [`run`]: one run from start to verdict.
//! * [`soak`]: the soak's schedule, random faults drawn from a seed
//!   (`cargo xtask soak`); [`resources`]: the process's memory and file
//!   descriptors over the run, judged; [`rng`]: the seeded generator.

pub mod bot;
pub mod faults;
pub mod game;
pub mod ledger;
pub mod profile;
pub mod report;
pub mod resources;
pub mod rng;
pub mod run;
pub mod soak;
pub mod stats;
pub mod verdict;
pub mod view;

/// The module's typed bindings, as `spacelink generate` wrote them (the
/// checked-in copy the `spacelink` crate's tests keep up to date).
#[path = "../../app/tests/bindings/guildmaster.rs"]
#[allow(missing_docs, missing_debug_implementations)]
pub mod guildmaster;
