//! # guildmaster: the SpacetimeDB 1.3 module played by spacelink's tests and demo
//!
//! *guildmaster* is a tiny top-down game. The world has two maps ("meadow"
//! 100x100 and "caves" 50x50). Players [`join`] a map under a name, walk
//! around with [`move_player`], [`attack`] the entities standing near them
//! and [`pick_up`] items lying on the ground, which then appear in their
//! [`Inventory`]. NPCs move on their own: the scheduled reducer [`npc_tick`]
//! runs every `config.npc_tick_ms` milliseconds (200 by default) and moves
//! every NPC a small, deterministic step, so a subscribed client sees a steady
//! stream of row updates.
//!
//! The module is written for the client library rather than for fun, so
//! every part of it exists to exercise a client feature:
//!
//! * [`move_player`] carries a client sequence number, drops stale or
//!   duplicate inputs (this is how a client retries without double
//!   execution) and may correct the requested step (it is clamped to
//!   `config.max_step` and to the map bounds), so client-side prediction can
//!   be wrong and has to reconcile with the server.
//! * [`act`] plays [`pick_up`], [`attack`] and [`spawn_entities`] as
//!   *sequenced actions*: each carries a client sequence number per player,
//!   a repeat of an applied number is dropped (so a client may resend it
//!   after a lost session), and every applied action leaves a row in
//!   [`ActionLog`], so a test can prove from the server alone that each
//!   acknowledged action ran exactly once.
//! * [`spawn_entities`] / [`clear_spawned`] produce bulk inserts and deletes
//!   (up to 100 000 rows in one transaction) for subscription and
//!   throughput tests; [`bump_spawned`] updates as many in one transaction.
//! * [`always_fail`] always fails with the given message, for testing error
//!   reporting of reducer calls.
//! * [`set_npc_tick`] changes, stops or restarts the scheduled tick.
//! * The [`AllTypes`] table, filled by [`insert_sample`], has one column of
//!   every type a SpacetimeDB 1.3 column can have: every integer width
//!   including `u128`/`i128` and `u256`/`i256`, both floats, `bool`,
//!   `String`, bytes, arrays, options, unit enums, enums with payloads,
//!   nested product types, `Identity`, `ConnectionId`, `Timestamp`,
//!   `TimeDuration` and `ScheduleAt`. Its values are a pure function of the
//!   row id (see [`insert_sample`]) so that client tests can assert the
//!   decoded values exactly.
//!
//! All tables are public, so clients may subscribe to any of them.
//!
//! Everything the module does is deterministic: positions come from the
//! entity ids, the reducer arguments and the transaction timestamp, never
//! from a random number generator.

use std::time::Duration;

use spacetimedb::sats::{i256, u256};
use spacetimedb::{
    log, reducer, table, ConnectionId, Identity, ReducerContext, ScheduleAt, SpacetimeType, Table, TimeDuration,
    Timestamp,
};

// ---------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------

/// A point or a displacement on a map, in map units.
#[derive(SpacetimeType, Clone, Copy, Debug, PartialEq)]
pub struct Vec2 {
    pub x: f32,
    pub y: f32,
}

impl Vec2 {
    /// Builds a vector.
    pub const fn new(x: f32, y: f32) -> Self {
        Self { x, y }
    }

    /// Euclidean length.
    fn length(self) -> f32 {
        (self.x * self.x + self.y * self.y).sqrt()
    }

    /// Euclidean distance to `other`.
    fn distance(self, other: Vec2) -> f32 {
        Vec2::new(other.x - self.x, other.y - self.y).length()
    }
}

/// What an [`Entity`] row stands for.
#[derive(SpacetimeType, Clone, Copy, Debug, PartialEq)]
pub enum EntityKind {
    /// A non-player character; it also has a row in [`Npc`].
    Npc,
    /// A bulk-spawned dummy made by [`spawn_entities`].
    Spawned,
    /// Something lying on the ground. Not created by this module's reducers
    /// (items live in [`Item`]); kept so the enum has a third variant.
    Pickup,
}

/// How an NPC moves on each [`npc_tick`].
///
/// Note: the SATS derive of SpacetimeDB 1.3 treats a variant with a single
/// named field like a newtype variant, so `Wander { radius }` is a sum
/// variant `Wander` whose payload is a plain `f32` on the wire (the field
/// name `radius` is not part of the schema).
#[derive(SpacetimeType, Clone, Debug, PartialEq)]
pub enum Behaviour {
    /// Stands still.
    Idle,
    /// Walks to random points at most `radius` away from its home point.
    Wander { radius: f32 },
    /// Walks along the given points in order, one leg every
    /// [`PATROL_LEG_MICROS`], looping forever.
    Patrol(Vec<Vec2>),
}

/// A unit enum column for [`AllTypes`].
#[derive(SpacetimeType, Clone, Copy, Debug, PartialEq)]
pub enum Color {
    Red,
    Green,
    Blue,
}

/// An enum with payloads for [`AllTypes`].
#[derive(SpacetimeType, Clone, Debug, PartialEq)]
pub enum Shape {
    /// A circle with the given radius.
    Circle(f32),
    /// A rectangle with the given size.
    Rect(Vec2),
    /// No shape.
    Empty,
}

/// A nested product type (product in a product, with an array and an
/// optional sum inside) for [`AllTypes`].
#[derive(SpacetimeType, Clone, Debug, PartialEq)]
pub struct Nested {
    pub inner: Vec2,
    pub tags: Vec<String>,
    pub shape: Option<Shape>,
}

// ---------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------

/// A map players and entities live on.
#[table(name = map, public)]
#[derive(Clone, Debug, PartialEq)]
pub struct Map {
    #[primary_key]
    pub map_id: u32,
    pub name: String,
    pub width: f32,
    pub height: f32,
}

/// One row per identity that has ever [`join`]ed.
#[table(name = player, public)]
#[derive(Clone, Debug, PartialEq)]
pub struct Player {
    #[primary_key]
    pub identity: Identity,
    #[unique]
    #[auto_inc]
    pub player_id: u64,
    pub name: String,
    /// Whether the identity currently has a connection to the database.
    pub online: bool,
    pub map_id: u32,
    pub pos: Vec2,
    /// The highest [`move_player`] sequence number applied so far.
    pub last_input_seq: u32,
    /// How many [`move_player`] inputs were applied (duplicates are not):
    /// lets tests prove that retried inputs ran exactly once.
    pub moves_applied: u32,
    pub hp: i32,
    pub joined_at: Timestamp,
}

/// Something standing on a map: an NPC or a bulk-spawned dummy.
#[table(name = entity, public)]
#[derive(Clone, Debug, PartialEq)]
pub struct Entity {
    #[primary_key]
    #[auto_inc]
    pub entity_id: u64,
    #[index(btree)]
    pub map_id: u32,
    pub kind: EntityKind,
    pub pos: Vec2,
    /// The grid cell of `pos` (cells of [`CELL_SIZE`] units): integer columns a
    /// client can filter on to subscribe to the area around a point.
    pub cell_x: i32,
    /// See `cell_x`.
    pub cell_y: i32,
    pub hp: i32,
}

/// Side of the grid cells of `entity.cell_x`/`cell_y`, in map units.
pub const CELL_SIZE: f32 = 10.0;

/// The grid cell of a position.
fn cell_of(pos: Vec2) -> (i32, i32) {
    ((pos.x / CELL_SIZE).floor() as i32, (pos.y / CELL_SIZE).floor() as i32)
}

impl Entity {
    /// This entity moved to `pos` (its cell follows).
    fn at(self, pos: Vec2) -> Self {
        let (cell_x, cell_y) = cell_of(pos);
        Self { pos, cell_x, cell_y, ..self }
    }
}

/// The NPC part of an [`Entity`] of kind [`EntityKind::Npc`].
#[table(name = npc, public)]
#[derive(Clone, Debug, PartialEq)]
pub struct Npc {
    #[primary_key]
    pub entity_id: u64,
    pub name: String,
    pub behaviour: Behaviour,
    /// Map units per second.
    pub speed: f32,
}

/// An item, either lying on a map (`owner` is `None`) or owned by a player.
#[table(name = item, public)]
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    #[primary_key]
    #[auto_inc]
    pub item_id: u64,
    #[index(btree)]
    pub map_id: u32,
    pub pos: Vec2,
    pub name: String,
    pub owner: Option<Identity>,
}

/// One inventory slot of a player.
#[table(name = inventory, public)]
#[derive(Clone, Debug, PartialEq)]
pub struct Inventory {
    #[primary_key]
    #[auto_inc]
    pub slot_id: u64,
    #[index(btree)]
    pub owner: Identity,
    pub item_id: u64,
    pub quantity: u32,
}

/// The sequenced actions of one player (see [`act`]): the highest sequence
/// number applied and how many were applied.
#[table(name = action_seq, public)]
#[derive(Clone, Debug, PartialEq)]
pub struct ActionSeq {
    #[primary_key]
    pub owner: Identity,
    pub last_seq: u32,
    pub applied: u32,
}

/// One row per applied [`act`] call: who, which sequence number, what.
#[table(name = action_log, public)]
#[derive(Clone, Debug, PartialEq)]
pub struct ActionLog {
    #[primary_key]
    #[auto_inc]
    pub log_id: u64,
    #[index(btree)]
    pub owner: Identity,
    pub seq: u32,
    pub action: Action,
}

/// What an [`act`] call does: the same as the reducer of that name.
#[derive(SpacetimeType, Clone, Debug, PartialEq)]
pub enum Action {
    /// [`pick_up`] this item.
    PickUp(u64),
    /// [`attack`] this entity.
    Attack(u64),
    /// [`spawn_entities`] this many on the player's map.
    Spawn(u32),
}

/// Schedule rows of [`npc_tick`]. [`init`] and [`set_npc_tick`] keep at most
/// one row here, an interval of `config.npc_tick_ms`.
#[table(name = npc_tick_schedule, public, scheduled(npc_tick))]
#[derive(Clone, Debug, PartialEq)]
pub struct NpcTickSchedule {
    #[primary_key]
    #[auto_inc]
    pub scheduled_id: u64,
    pub scheduled_at: ScheduleAt,
}

/// The game settings; a single row with `id == 0`.
#[table(name = config, public)]
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    #[primary_key]
    pub id: u32,
    /// Interval of [`npc_tick`] in milliseconds; 0 when the tick is stopped.
    pub npc_tick_ms: u64,
    /// The longest step one [`move_player`] call may make.
    pub max_step: f32,
}

/// One column of every column type; filled by [`insert_sample`].
#[table(name = all_types, public)]
#[derive(Clone, Debug, PartialEq)]
pub struct AllTypes {
    #[primary_key]
    pub id: u32,
    pub a_u8: u8,
    pub a_u16: u16,
    pub a_u32: u32,
    pub a_u64: u64,
    pub a_u128: u128,
    pub a_u256: u256,
    pub a_i8: i8,
    pub a_i16: i16,
    pub a_i32: i32,
    pub a_i64: i64,
    pub a_i128: i128,
    pub a_i256: i256,
    pub a_f32: f32,
    pub a_f64: f64,
    pub a_bool: bool,
    pub a_string: String,
    pub a_bytes: Vec<u8>,
    pub a_vec: Vec<u32>,
    pub a_vec_string: Vec<String>,
    pub an_opt_i32: Option<i32>,
    pub an_opt_string: Option<String>,
    pub a_color: Color,
    pub a_shape: Shape,
    pub a_nested: Nested,
    pub an_identity: Identity,
    pub a_connection_id: ConnectionId,
    pub a_timestamp: Timestamp,
    pub a_duration: TimeDuration,
    pub a_schedule: ScheduleAt,
}

// ---------------------------------------------------------------------------
// Constants and helpers
// ---------------------------------------------------------------------------

/// The primary key of the only [`Config`] row.
const CONFIG_ID: u32 = 0;
/// Default interval of [`npc_tick`].
const DEFAULT_NPC_TICK_MS: u64 = 200;
/// Default `config.max_step`.
const DEFAULT_MAX_STEP: f32 = 1.0;
/// Longest accepted [`set_npc_tick`] interval: one day.
const MAX_NPC_TICK_MS: u64 = 86_400_000;
/// Longest accepted player name, in characters.
const MAX_NAME_CHARS: usize = 32;
/// Starting hit points of a player and of an NPC.
const START_HP: i32 = 100;
/// Starting hit points of a bulk-spawned entity.
const SPAWNED_HP: i32 = 50;
/// Damage of one [`attack`].
const ATTACK_DAMAGE: i32 = 10;
/// How far a player can [`attack`].
const ATTACK_RANGE: f32 = 3.0;
/// How far a player can [`pick_up`].
const PICK_UP_RANGE: f32 = 2.0;
/// Most entities one [`act`] spawn may insert.
const MAX_ACT_SPAWN: u32 = 10;
/// Most entities one [`spawn_entities`] call may insert.
const MAX_SPAWN: u32 = 100_000;
/// How long a wandering NPC keeps walking to the same target.
const WANDER_TARGET_MICROS: i64 = 2_000_000;
/// How long a patrolling NPC walks towards one patrol point.
const PATROL_LEG_MICROS: i64 = 4_000_000;
/// The longest time step one [`npc_tick`] simulates.
const MAX_TICK_SECS: f32 = 1.0;

/// SplitMix64: a small, well-mixed hash used for all deterministic
/// "randomness" in the module.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Maps a hash to a float in `[0, 1)` (24 random bits).
fn unit_f32(h: u64) -> f32 {
    (h >> 40) as f32 / (1u64 << 24) as f32
}

/// The centre of a map.
fn centre(map: &Map) -> Vec2 {
    Vec2::new(map.width / 2.0, map.height / 2.0)
}

/// Clamps `p` into `[0, width] x [0, height]`.
fn clamp_to_map(p: Vec2, map: &Map) -> Vec2 {
    Vec2::new(p.x.clamp(0.0, map.width), p.y.clamp(0.0, map.height))
}

/// Moves from `from` towards `to` by at most `max_dist`.
fn step_towards(from: Vec2, to: Vec2, max_dist: f32) -> Vec2 {
    let d = Vec2::new(to.x - from.x, to.y - from.y);
    let len = d.length();
    if len <= max_dist || len == 0.0 {
        to
    } else {
        let k = max_dist / len;
        Vec2::new(from.x + d.x * k, from.y + d.y * k)
    }
}

/// The home point of an NPC: a deterministic point of the map, derived from
/// the entity id, at least 10% of the map size away from each edge. NPCs
/// start there and wanderers wander around it.
fn npc_home(entity_id: u64, map: &Map) -> Vec2 {
    let h = mix(entity_id ^ 0x4E50_4348_4F4D_4500);
    let (mx, my) = (map.width * 0.1, map.height * 0.1);
    Vec2::new(mx + unit_f32(h) * (map.width - 2.0 * mx), my + unit_f32(mix(h)) * (map.height - 2.0 * my))
}

fn find_map(ctx: &ReducerContext, map_id: u32) -> Result<Map, String> {
    ctx.db.map().map_id().find(map_id).ok_or_else(|| format!("map {map_id} does not exist"))
}

fn find_player(ctx: &ReducerContext) -> Result<Player, String> {
    ctx.db.player().identity().find(ctx.sender).ok_or_else(|| "not joined: call join first".to_string())
}

fn config(ctx: &ReducerContext) -> Config {
    ctx.db.config().id().find(CONFIG_ID).unwrap_or(Config {
        id: CONFIG_ID,
        npc_tick_ms: DEFAULT_NPC_TICK_MS,
        max_step: DEFAULT_MAX_STEP,
    })
}

/// Deletes every [`NpcTickSchedule`] row and, if `interval_ms > 0`, inserts
/// one that runs [`npc_tick`] every `interval_ms` milliseconds.
fn reschedule_npc_tick(ctx: &ReducerContext, interval_ms: u64) {
    let ids: Vec<u64> = ctx.db.npc_tick_schedule().iter().map(|s| s.scheduled_id).collect();
    for id in ids {
        ctx.db.npc_tick_schedule().scheduled_id().delete(id);
    }
    if interval_ms > 0 {
        ctx.db
            .npc_tick_schedule()
            .insert(NpcTickSchedule { scheduled_id: 0, scheduled_at: Duration::from_millis(interval_ms).into() });
    }
}

// ---------------------------------------------------------------------------
// Lifecycle reducers
// ---------------------------------------------------------------------------

/// Seeds the world: the config row (`npc_tick_ms` 200, `max_step` 1.0), the
/// maps 1 "meadow" (100x100) and 2 "caves" (50x50), five NPCs per map (one
/// idle, two wanderers, two patrollers; hp 100, speed 1.0, each starting at
/// its [home point](npc_home)), three unowned items per map, and the
/// [`npc_tick`] schedule.
#[reducer(init)]
pub fn init(ctx: &ReducerContext) -> Result<(), String> {
    ctx.db.config().insert(Config { id: CONFIG_ID, npc_tick_ms: DEFAULT_NPC_TICK_MS, max_step: DEFAULT_MAX_STEP });

    let maps = [
        Map { map_id: 1, name: "meadow".into(), width: 100.0, height: 100.0 },
        Map { map_id: 2, name: "caves".into(), width: 50.0, height: 50.0 },
    ];
    const NPC_NAMES: [&str; 5] = ["Hermit", "Rabbit", "Fox", "Guard", "Courier"];
    const ITEM_NAMES: [&str; 3] = ["sword", "shield", "potion"];

    for map in maps {
        let map = ctx.db.map().insert(map);

        for (slot, npc_name) in NPC_NAMES.iter().enumerate() {
            let start = centre(&map);
            let (cell_x, cell_y) = cell_of(start);
            let row = ctx.db.entity().insert(Entity {
                entity_id: 0,
                map_id: map.map_id,
                kind: EntityKind::Npc,
                pos: start,
                cell_x,
                cell_y,
                hp: START_HP,
            });
            let home = npc_home(row.entity_id, &map);
            let entity_id = row.entity_id;
            ctx.db.entity().entity_id().update(row.at(home));
            let around = |dx: f32, dy: f32| clamp_to_map(Vec2::new(home.x + dx, home.y + dy), &map);
            let behaviour = match slot {
                0 => Behaviour::Idle,
                1 => Behaviour::Wander { radius: 5.0 },
                2 => Behaviour::Wander { radius: 10.0 },
                3 => Behaviour::Patrol(vec![around(0.0, 0.0), around(4.0, 0.0), around(4.0, 4.0), around(0.0, 4.0)]),
                _ => Behaviour::Patrol(vec![around(-3.0, 0.0), around(3.0, 0.0)]),
            };
            ctx.db.npc().insert(Npc {
                entity_id,
                name: format!("{npc_name} of the {}", map.name),
                behaviour,
                speed: 1.0,
            });
        }

        for (i, item_name) in ITEM_NAMES.iter().enumerate() {
            // Spread along a diagonal through the lower-left quarter,
            // 1/4, 1/3 and 5/12 of the way across.
            let f = 0.25 + i as f32 / 12.0;
            ctx.db.item().insert(Item {
                item_id: 0,
                map_id: map.map_id,
                pos: Vec2::new(map.width * f, map.height * f),
                name: (*item_name).to_string(),
                owner: None,
            });
        }
    }

    reschedule_npc_tick(ctx, DEFAULT_NPC_TICK_MS);
    log::info!("guildmaster initialised");
    Ok(())
}

/// Marks the caller's player, if any, as online.
#[reducer(client_connected)]
pub fn client_connected(ctx: &ReducerContext) {
    if let Some(player) = ctx.db.player().identity().find(ctx.sender) {
        ctx.db.player().identity().update(Player { online: true, ..player });
    }
}

/// Marks the caller's player, if any, as offline.
#[reducer(client_disconnected)]
pub fn client_disconnected(ctx: &ReducerContext) {
    if let Some(player) = ctx.db.player().identity().find(ctx.sender) {
        ctx.db.player().identity().update(Player { online: false, ..player });
    }
}

// ---------------------------------------------------------------------------
// Player reducers
// ---------------------------------------------------------------------------

/// Joins map `map_id` as `name` (1 to 32 characters).
///
/// A new player starts with hp 100 at the map centre, `last_input_seq` 0,
/// online, `joined_at` = now. An existing player gets the new name and map
/// and is put at the centre of that map; everything else (including
/// `last_input_seq`, hp and `joined_at`) is kept.
#[reducer]
pub fn join(ctx: &ReducerContext, name: String, map_id: u32) -> Result<(), String> {
    if name.is_empty() {
        return Err("name must not be empty".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("name must be at most {MAX_NAME_CHARS} characters"));
    }
    let map = find_map(ctx, map_id)?;
    let pos = centre(&map);
    match ctx.db.player().identity().find(ctx.sender) {
        Some(player) => {
            ctx.db.player().identity().update(Player { name, map_id, pos, ..player });
        }
        None => {
            ctx.db.player().insert(Player {
                identity: ctx.sender,
                player_id: 0,
                name,
                online: true,
                map_id,
                pos,
                last_input_seq: 0,
                moves_applied: 0,
                hp: START_HP,
                joined_at: ctx.timestamp,
            });
        }
    }
    Ok(())
}

/// Moves the caller's player by `(dx, dy)`.
///
/// Errors if the caller has not joined or `dx`/`dy` is not finite. An input
/// whose `seq` is not greater than the player's `last_input_seq` (a duplicate
/// or stale input) is dropped and the call succeeds without changing
/// anything. Otherwise a step longer than `config.max_step` is scaled down to
/// `max_step`, the new position is clamped to the map, and `last_input_seq`
/// becomes `seq`. The server's result can therefore differ from what a
/// client predicted.
#[reducer]
pub fn move_player(ctx: &ReducerContext, seq: u32, dx: f32, dy: f32) -> Result<(), String> {
    let player = find_player(ctx)?;
    if !dx.is_finite() || !dy.is_finite() {
        return Err("dx and dy must be finite".into());
    }
    if seq <= player.last_input_seq {
        return Ok(());
    }
    let map = find_map(ctx, player.map_id)?;
    let max_step = config(ctx).max_step;
    let mut step = Vec2::new(dx, dy);
    let len = step.length();
    if len > max_step {
        let k = max_step / len;
        step = Vec2::new(dx * k, dy * k);
    }
    let pos = clamp_to_map(Vec2::new(player.pos.x + step.x, player.pos.y + step.y), &map);
    ctx.db.player().identity().update(Player {
        pos,
        last_input_seq: seq,
        moves_applied: player.moves_applied + 1,
        ..player
    });
    Ok(())
}

/// Hits entity `target_entity_id` for 10 hp; an entity whose hp drops to 0
/// or below is deleted together with its NPC row.
///
/// Errors if the caller has not joined, or the entity does not exist, is on
/// another map or is farther than 3.0 from the player.
#[reducer]
pub fn attack(ctx: &ReducerContext, target_entity_id: u64) -> Result<(), String> {
    let player = find_player(ctx)?;
    let target = ctx
        .db
        .entity()
        .entity_id()
        .find(target_entity_id)
        .ok_or_else(|| format!("entity {target_entity_id} does not exist"))?;
    if target.map_id != player.map_id {
        return Err(format!("entity {target_entity_id} is on another map"));
    }
    if player.pos.distance(target.pos) > ATTACK_RANGE {
        return Err(format!("entity {target_entity_id} is out of range"));
    }
    let hp = target.hp.saturating_sub(ATTACK_DAMAGE);
    if hp <= 0 {
        ctx.db.entity().entity_id().delete(target_entity_id);
        ctx.db.npc().entity_id().delete(target_entity_id);
    } else {
        ctx.db.entity().entity_id().update(Entity { hp, ..target });
    }
    Ok(())
}

/// Picks up item `item_id`: it becomes owned by the caller and a new
/// inventory slot (quantity 1) is added for it.
///
/// Errors if the caller has not joined, or the item does not exist, is owned
/// already, is on another map or is farther than 2.0 from the player.
#[reducer]
pub fn pick_up(ctx: &ReducerContext, item_id: u64) -> Result<(), String> {
    let player = find_player(ctx)?;
    let item = ctx.db.item().item_id().find(item_id).ok_or_else(|| format!("item {item_id} does not exist"))?;
    if item.owner.is_some() {
        return Err(format!("item {item_id} is already owned"));
    }
    if item.map_id != player.map_id {
        return Err(format!("item {item_id} is on another map"));
    }
    if player.pos.distance(item.pos) > PICK_UP_RANGE {
        return Err(format!("item {item_id} is out of range"));
    }
    ctx.db.item().item_id().update(Item { owner: Some(ctx.sender), ..item });
    ctx.db.inventory().insert(Inventory { slot_id: 0, owner: ctx.sender, item_id, quantity: 1 });
    Ok(())
}

/// Plays `action` as the caller's sequenced action number `seq`: a `seq` not
/// greater than the caller's `action_seq.last_seq` (a repeat, or stale) is
/// dropped without changing anything, and answered as its first run was: it
/// succeeds if an [`ActionLog`] row says `seq` was applied, and fails
/// otherwise (it was refused, or skipped by a later number), so that a client
/// that resends a call after a lost session hears the truth; otherwise the
/// action runs as its own reducer would ([`pick_up`], [`attack`],
/// [`spawn_entities`] on the player's map, at most 10 at once) and, if it
/// succeeds, `last_seq` becomes `seq`, `applied` goes up by one and an
/// [`ActionLog`] row records it. A failing action fails the call and changes
/// nothing (its number may be used again).
#[reducer]
pub fn act(ctx: &ReducerContext, seq: u32, action: Action) -> Result<(), String> {
    let player = find_player(ctx)?;
    let done = ctx.db.action_seq().owner().find(ctx.sender);
    if done.as_ref().is_some_and(|d| seq <= d.last_seq) {
        return if ctx.db.action_log().owner().filter(ctx.sender).any(|l| l.seq == seq) {
            Ok(())
        } else {
            Err(format!("action {seq} was not applied (refused before, or skipped by a later number)"))
        };
    }
    match action.clone() {
        Action::PickUp(item_id) => pick_up(ctx, item_id)?,
        Action::Attack(entity_id) => attack(ctx, entity_id)?,
        Action::Spawn(count) => spawn_entities(ctx, player.map_id, count.min(MAX_ACT_SPAWN))?,
    }
    let applied = done.as_ref().map_or(0, |d| d.applied) + 1;
    let row = ActionSeq { owner: ctx.sender, last_seq: seq, applied };
    if done.is_some() {
        ctx.db.action_seq().owner().update(row);
    } else {
        ctx.db.action_seq().insert(row);
    }
    ctx.db.action_log().insert(ActionLog { log_id: 0, owner: ctx.sender, seq, action });
    Ok(())
}

// ---------------------------------------------------------------------------
// NPCs
// ---------------------------------------------------------------------------

/// Moves every NPC one step; run by the scheduler only.
///
/// The step is `speed * dt`, where `dt` is the schedule interval (at most one
/// second). [`Behaviour::Idle`] NPCs stay. A wanderer walks towards a target
/// within `radius` of its [home point](npc_home); the target is derived from
/// the entity id and the current 2-second window of `ctx.timestamp`. A
/// patroller walks towards patrol point `k`, where `k` advances every
/// 4 seconds of `ctx.timestamp` (offset by the entity id). Positions stay
/// inside the map, and rows whose position does not change are not written.
#[reducer]
pub fn npc_tick(ctx: &ReducerContext, arg: NpcTickSchedule) -> Result<(), String> {
    if ctx.sender != ctx.identity() {
        return Err("npc_tick may only be called by the scheduler".into());
    }
    let dt_secs = match arg.scheduled_at {
        ScheduleAt::Interval(d) => d.to_micros() as f32 / 1e6,
        ScheduleAt::Time(_) => config(ctx).npc_tick_ms as f32 / 1e3,
    }
    .clamp(0.0, MAX_TICK_SECS);
    let now = ctx.timestamp.to_micros_since_unix_epoch();

    let maps: Vec<Map> = ctx.db.map().iter().collect();
    let npcs: Vec<Npc> = ctx.db.npc().iter().collect();
    for npc in npcs {
        let Some(entity) = ctx.db.entity().entity_id().find(npc.entity_id) else {
            continue;
        };
        let Some(map) = maps.iter().find(|m| m.map_id == entity.map_id) else {
            continue;
        };
        let step = npc.speed.max(0.0) * dt_secs;
        let target = match &npc.behaviour {
            Behaviour::Idle => continue,
            Behaviour::Wander { radius } => {
                let window = now.div_euclid(WANDER_TARGET_MICROS) as u64;
                let h = mix(npc.entity_id.wrapping_mul(0x1_0000_0001) ^ window);
                // A uniformly random offset in the square [-1, 1]^2,
                // pulled into the unit disc, then scaled by the radius.
                let mut off = Vec2::new(unit_f32(h) * 2.0 - 1.0, unit_f32(mix(h)) * 2.0 - 1.0);
                let len = off.length();
                if len > 1.0 {
                    off = Vec2::new(off.x / len, off.y / len);
                }
                let home = npc_home(npc.entity_id, map);
                Vec2::new(home.x + off.x * radius, home.y + off.y * radius)
            }
            Behaviour::Patrol(points) => {
                if points.is_empty() {
                    continue;
                }
                let leg = (now.div_euclid(PATROL_LEG_MICROS) as u64).wrapping_add(npc.entity_id);
                points[(leg % points.len() as u64) as usize]
            }
        };
        let pos = clamp_to_map(step_towards(entity.pos, target, step), map);
        if pos != entity.pos {
            ctx.db.entity().entity_id().update(entity.at(pos));
        }
    }
    Ok(())
}

/// Sets the [`npc_tick`] interval to `interval_ms` milliseconds and stores it
/// in `config.npc_tick_ms`; 0 stops the tick (all schedule rows are deleted).
/// Errors if `interval_ms` is longer than one day.
#[reducer]
pub fn set_npc_tick(ctx: &ReducerContext, interval_ms: u64) -> Result<(), String> {
    if interval_ms > MAX_NPC_TICK_MS {
        return Err(format!("interval_ms must be at most {MAX_NPC_TICK_MS}"));
    }
    reschedule_npc_tick(ctx, interval_ms);
    let cfg = config(ctx);
    let cfg = Config { npc_tick_ms: interval_ms, ..cfg };
    if ctx.db.config().id().find(CONFIG_ID).is_some() {
        ctx.db.config().id().update(cfg);
    } else {
        ctx.db.config().insert(cfg);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Bulk operations
// ---------------------------------------------------------------------------

/// Inserts `count` entities of kind [`EntityKind::Spawned`] (hp 50) on map
/// `map_id`, at pseudo-random positions from a linear congruential
/// generator seeded with `map_id` and `count` (so the same call always
/// yields the same positions).
///
/// Errors if the map does not exist or `count` is above 100 000.
#[reducer]
pub fn spawn_entities(ctx: &ReducerContext, map_id: u32, count: u32) -> Result<(), String> {
    let map = find_map(ctx, map_id)?;
    if count > MAX_SPAWN {
        return Err(format!("count must be at most {MAX_SPAWN}"));
    }
    // Knuth's MMIX LCG; the high 24 bits of each state are the output.
    let mut state: u64 = mix(((map_id as u64) << 32) | count as u64);
    let mut next = || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        unit_f32(state)
    };
    for _ in 0..count {
        let x = next() * map.width;
        let y = next() * map.height;
        let pos = Vec2::new(x, y);
        let (cell_x, cell_y) = cell_of(pos);
        ctx.db.entity().insert(Entity {
            entity_id: 0,
            map_id,
            kind: EntityKind::Spawned,
            pos,
            cell_x,
            cell_y,
            hp: SPAWNED_HP,
        });
    }
    Ok(())
}

/// Deletes every entity of kind [`EntityKind::Spawned`] on map `map_id`
/// (a map without any is fine).
#[reducer]
pub fn clear_spawned(ctx: &ReducerContext, map_id: u32) {
    let ids: Vec<u64> = ctx
        .db
        .entity()
        .map_id()
        .filter(map_id)
        .filter(|e| e.kind == EntityKind::Spawned)
        .map(|e| e.entity_id)
        .collect();
    for id in ids {
        ctx.db.entity().entity_id().delete(id);
    }
}

/// Updates up to `limit` entities of kind [`EntityKind::Spawned`] on map
/// `map_id` in one transaction: each one's `hp` goes up by one (back to 50
/// after 1000), nothing else changes, so its cell and any subscription
/// filtering on it stay the same. Every touched row is an update for a
/// subscribed client, which is how benchmarks measure applied updates and
/// not only inserts and deletes.
///
/// Errors if the map does not exist or `limit` is above 100 000.
#[reducer]
pub fn bump_spawned(ctx: &ReducerContext, map_id: u32, limit: u32) -> Result<(), String> {
    find_map(ctx, map_id)?;
    if limit > MAX_SPAWN {
        return Err(format!("limit must be at most {MAX_SPAWN}"));
    }
    let rows: Vec<Entity> = ctx
        .db
        .entity()
        .map_id()
        .filter(map_id)
        .filter(|e| e.kind == EntityKind::Spawned)
        .take(limit as usize)
        .collect();
    for row in rows {
        let hp = if row.hp >= 1000 { SPAWNED_HP } else { row.hp + 1 };
        ctx.db.entity().entity_id().update(Entity { hp, ..row });
    }
    Ok(())
}

/// Deletes up to `limit` entities of kind [`EntityKind::Spawned`] on map
/// `map_id` in one transaction (a map with fewer is fine): how benchmarks
/// measure applied deletes, a transaction of a given size at a time.
///
/// Errors if `limit` is above 100 000.
#[reducer]
pub fn delete_spawned(ctx: &ReducerContext, map_id: u32, limit: u32) -> Result<(), String> {
    if limit > MAX_SPAWN {
        return Err(format!("limit must be at most {MAX_SPAWN}"));
    }
    let ids: Vec<u64> = ctx
        .db
        .entity()
        .map_id()
        .filter(map_id)
        .filter(|e| e.kind == EntityKind::Spawned)
        .take(limit as usize)
        .map(|e| e.entity_id)
        .collect();
    for id in ids {
        ctx.db.entity().entity_id().delete(id);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Test helpers
// ---------------------------------------------------------------------------

/// Always fails, with `message` as the error, unchanged.
#[reducer]
pub fn always_fail(_ctx: &ReducerContext, message: String) -> Result<(), String> {
    Err(message)
}

/// Inserts, or replaces, the [`AllTypes`] row `id`. Its values depend only
/// on `id` (and, for `id != 0`, on the caller):
///
/// | column            | `id == 0` ("minimums")             | any other `id` ("maximums")                          |
/// |-------------------|------------------------------------|------------------------------------------------------|
/// | `a_u8`..`a_u256`  | 0                                  | `MAX` of each type                                   |
/// | `a_i8`..`a_i256`  | `MIN` of each type                 | `MAX` of each type                                   |
/// | `a_f32`           | -1.5                               | 3.25                                                 |
/// | `a_f64`           | -2.25                              | 1e300                                                |
/// | `a_bool`          | false                              | true                                                 |
/// | `a_string`        | `""`                               | `format!("row {id} ✓")`                              |
/// | `a_bytes`         | `[]`                               | `[0, 1, 254, 255]`                                   |
/// | `a_vec`           | `[]`                               | `[1, 2, id]`                                         |
/// | `a_vec_string`    | `[]`                               | `["a", "bc"]`                                        |
/// | `an_opt_i32`      | `None`                             | `Some(-7)`                                           |
/// | `an_opt_string`   | `None`                             | `Some("some")`                                       |
/// | `a_color`         | `Red`                              | `Blue`                                               |
/// | `a_shape`         | `Empty`                            | `Rect(Vec2 { x: 1.0, y: 2.0 })`                      |
/// | `a_nested`        | `{ inner: (0, 0), tags: [], shape: None }` | `{ inner: (3, 4), tags: ["x", "y"], shape: Some(Circle(0.5)) }` |
/// | `an_identity`     | `Identity::ZERO` (32 zero bytes)   | the caller (`ctx.sender`)                            |
/// | `a_connection_id` | `ConnectionId::ZERO`               | the caller's connection id, or `ZERO` if it has none |
/// | `a_timestamp`     | `Timestamp::UNIX_EPOCH` (0 µs)     | 1 700 000 000 000 000 µs after the epoch             |
/// | `a_duration`      | 0 µs                               | 1 500 000 µs                                         |
/// | `a_schedule`      | `Interval(0 µs)`                   | `Time(1 700 000 000 000 000 µs after the epoch)`     |
#[reducer]
pub fn insert_sample(ctx: &ReducerContext, id: u32) {
    let row = if id == 0 {
        AllTypes {
            id,
            a_u8: 0,
            a_u16: 0,
            a_u32: 0,
            a_u64: 0,
            a_u128: 0,
            a_u256: u256::ZERO,
            a_i8: i8::MIN,
            a_i16: i16::MIN,
            a_i32: i32::MIN,
            a_i64: i64::MIN,
            a_i128: i128::MIN,
            a_i256: i256::MIN,
            a_f32: -1.5,
            a_f64: -2.25,
            a_bool: false,
            a_string: String::new(),
            a_bytes: Vec::new(),
            a_vec: Vec::new(),
            a_vec_string: Vec::new(),
            an_opt_i32: None,
            an_opt_string: None,
            a_color: Color::Red,
            a_shape: Shape::Empty,
            a_nested: Nested { inner: Vec2::new(0.0, 0.0), tags: Vec::new(), shape: None },
            an_identity: Identity::ZERO,
            a_connection_id: ConnectionId::ZERO,
            a_timestamp: Timestamp::UNIX_EPOCH,
            a_duration: TimeDuration::from_micros(0),
            a_schedule: ScheduleAt::Interval(TimeDuration::from_micros(0)),
        }
    } else {
        let fixed_time = Timestamp::from_micros_since_unix_epoch(1_700_000_000_000_000);
        AllTypes {
            id,
            a_u8: u8::MAX,
            a_u16: u16::MAX,
            a_u32: u32::MAX,
            a_u64: u64::MAX,
            a_u128: u128::MAX,
            a_u256: u256::MAX,
            a_i8: i8::MAX,
            a_i16: i16::MAX,
            a_i32: i32::MAX,
            a_i64: i64::MAX,
            a_i128: i128::MAX,
            a_i256: i256::MAX,
            a_f32: 3.25,
            a_f64: 1e300,
            a_bool: true,
            a_string: format!("row {id} ✓"),
            a_bytes: vec![0, 1, 254, 255],
            a_vec: vec![1, 2, id],
            a_vec_string: vec!["a".into(), "bc".into()],
            an_opt_i32: Some(-7),
            an_opt_string: Some("some".into()),
            a_color: Color::Blue,
            a_shape: Shape::Rect(Vec2::new(1.0, 2.0)),
            a_nested: Nested {
                inner: Vec2::new(3.0, 4.0),
                tags: vec!["x".into(), "y".into()],
                shape: Some(Shape::Circle(0.5)),
            },
            an_identity: ctx.sender,
            a_connection_id: ctx.connection_id.unwrap_or(ConnectionId::ZERO),
            a_timestamp: fixed_time,
            a_duration: TimeDuration::from_micros(1_500_000),
            a_schedule: ScheduleAt::Time(fixed_time),
        }
    };
    if ctx.db.all_types().id().find(id).is_some() {
        ctx.db.all_types().id().update(row);
    } else {
        ctx.db.all_types().insert(row);
    }
}
