//! What a bot knows of the game it plays, guildmaster (`modules/guildmaster`):
//! its tables and reducers through the generated bindings, where a player
//! stands, what a bot subscribes to, and which action it takes next. The
//! rest of the engine ([`crate::bot`]) goes through this module only.

use std::sync::Arc;

use spacelink::connection::lib::Identity;
use spacelink::prediction::{Position, Step, Walk};
use spacelink::prediction_link::PredictedEntity;
use spacelink::Client;

pub use crate::guildmaster::{
    row_types, ActArgs, Action, ActionLog, Entity, Item, JoinArgs, ModuleClient, MovePlayerArgs, Player,
};

/// The reducer a bot moves with (sequenced by its first argument).
pub const MOVE_REDUCER: &str = "move_player";
/// The reducer of sequenced actions.
pub const ACT_REDUCER: &str = "act";
/// The longest step the server accepts (`config.max_step`).
pub const MAX_STEP: f32 = 1.0;
/// How far `pick_up` reaches.
pub const PICK_UP_RANGE: f32 = 2.0;
/// How far `attack` reaches.
pub const ATTACK_RANGE: f32 = 3.0;

/// The maps: id and size (`init` makes them).
pub const MAPS: [(u32, f32); 2] = [(1, 100.0), (2, 50.0)];

/// The size of map `map_id`.
pub fn map_size(map_id: u32) -> f32 {
    MAPS.iter().find(|(id, _)| *id == map_id).map_or(100.0, |(_, size)| *size)
}

/// The prediction model of a player on `map_id`: walks clamped to the map.
/// Steps are not clamped in the model (the server clamps long ones, and the
/// prediction is corrected: that is what the demo shows).
pub fn walk(map_id: u32) -> Walk {
    let size = map_size(map_id);
    Walk { max_step: None, bounds: Some((Position { x: 0.0, y: 0.0 }, Position { x: size, y: size })) }
}

/// Where `me`'s player lives on the server, for [`Client::predict`].
pub fn my_player(me: Identity) -> PredictedEntity<Walk> {
    PredictedEntity {
        table: "player".into(),
        reducer: MOVE_REDUCER.into(),
        read_row: Arc::new(move |row| {
            let p: Player = spacelink::__codegen::bsatn::from_slice(row).ok()?;
            (p.identity == me).then_some((Position { x: p.pos.x, y: p.pos.y }, p.last_input_seq))
        }),
        encode_input: Arc::new(|seq, step: &Step| {
            spacelink::__codegen::bsatn::to_vec(&MovePlayerArgs { seq, dx: step.dx, dy: step.dy })
                .unwrap_or_default()
                .into()
        }),
    }
}

/// What a bot on `map_id` subscribes to: the map's players, entities and
/// items, and its own action log.
pub fn queries(map_id: u32, me: Identity) -> Vec<String> {
    vec![
        format!("SELECT * FROM player WHERE map_id = {map_id}"),
        format!("SELECT * FROM entity WHERE map_id = {map_id}"),
        format!("SELECT * FROM item WHERE map_id = {map_id}"),
        format!("SELECT * FROM action_log WHERE owner = 0x{}", me.to_hex()),
    ]
}

/// The table a query of [`queries`] reads.
pub fn table_of(query: &str) -> Option<&str> {
    query.strip_prefix("SELECT * FROM ")?.split_whitespace().next()
}

/// Where the bot heads and what it does there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// An unowned item: pick it up.
    Item { id: u64, at: Position },
    /// An entity: attack it.
    Entity { id: u64, at: Position },
    /// A point of the map: just walk.
    Wander { at: Position },
}

impl Goal {
    /// Where it is.
    pub fn at(self) -> Position {
        match self {
            Goal::Item { at, .. } | Goal::Entity { at, .. } | Goal::Wander { at } => at,
        }
    }
}

/// The closest unowned item, else the closest entity, on `map_id`, seen from
/// `from` in `client`'s cache; `None` if the map looks empty.
pub fn pick_goal(client: &Client, map_id: u32, from: Position) -> Option<Goal> {
    let dist = |p: Position| (p.x - from.x).hypot(p.y - from.y);
    let item = client
        .db()
        .item()
        .iter()
        .filter(|i| i.map_id == map_id && i.owner.is_none())
        .map(|i| Goal::Item { id: i.item_id, at: Position { x: i.pos.x, y: i.pos.y } })
        .min_by(|a, b| dist(a.at()).total_cmp(&dist(b.at())));
    item.or_else(|| {
        client
            .db()
            .entity()
            .iter()
            .filter(|e| e.map_id == map_id)
            .map(|e| Goal::Entity { id: e.entity_id, at: Position { x: e.pos.x, y: e.pos.y } })
            .min_by(|a, b| dist(a.at()).total_cmp(&dist(b.at())))
    })
}

/// The action to take at `from` for `goal`: pick up or attack when in reach,
/// otherwise spawn now and then (`spawn` says whether it is time).
pub fn action_for(goal: Option<Goal>, from: Position, spawn: bool) -> Option<Action> {
    let dist = |p: Position| (p.x - from.x).hypot(p.y - from.y);
    match goal {
        Some(Goal::Item { id, at }) if dist(at) <= PICK_UP_RANGE => Some(Action::PickUp(id)),
        Some(Goal::Entity { id, at }) if dist(at) <= ATTACK_RANGE => Some(Action::Attack(id)),
        _ if spawn => Some(Action::Spawn(1)),
        _ => None,
    }
}

/// A step from `from` towards `to`: at most [`MAX_STEP`] long, except that
/// `overshoot` makes it half again as long (the server clamps it).
pub fn step_towards(from: Position, to: Position, overshoot: bool) -> Step {
    let (dx, dy) = (to.x - from.x, to.y - from.y);
    let len = dx.hypot(dy);
    let want = if overshoot { MAX_STEP * 1.5 } else { MAX_STEP * 0.8 };
    if len <= f32::EPSILON {
        return Step { dx: 0.0, dy: 0.0 };
    }
    let k = want.min(len) / len;
    Step { dx: dx * k, dy: dy * k }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_heads_for_the_goal_and_overshoots_only_when_asked() {
        let from = Position { x: 0.0, y: 0.0 };
        let s = step_towards(from, Position { x: 10.0, y: 0.0 }, false);
        assert!((s.dx - 0.8).abs() < 1e-6 && s.dy == 0.0);
        let s = step_towards(from, Position { x: 0.0, y: 10.0 }, true);
        assert!((s.dy - 1.5).abs() < 1e-6);
        let s = step_towards(from, Position { x: 0.3, y: 0.0 }, false);
        assert!((s.dx - 0.3).abs() < 1e-6, "no step past the goal");
        assert_eq!(step_towards(from, from, true), Step { dx: 0.0, dy: 0.0 });
    }

    #[test]
    fn actions_need_reach_and_spawning_is_the_fallback() {
        let here = Position { x: 5.0, y: 5.0 };
        let near = Position { x: 6.0, y: 5.0 };
        let far = Position { x: 50.0, y: 5.0 };
        assert_eq!(action_for(Some(Goal::Item { id: 3, at: near }), here, false), Some(Action::PickUp(3)));
        assert_eq!(action_for(Some(Goal::Entity { id: 4, at: near }), here, false), Some(Action::Attack(4)));
        assert_eq!(action_for(Some(Goal::Item { id: 3, at: far }), here, false), None);
        assert_eq!(action_for(Some(Goal::Item { id: 3, at: far }), here, true), Some(Action::Spawn(1)));
        assert_eq!(action_for(None, here, true), Some(Action::Spawn(1)));
    }

    #[test]
    fn queries_name_their_table() {
        let me = Identity::ZERO;
        let qs = queries(1, me);
        let tables: Vec<&str> = qs.iter().filter_map(|q| table_of(q)).collect();
        assert_eq!(tables, ["player", "entity", "item", "action_log"]);
        assert_eq!(map_size(2), 50.0);
    }
}
