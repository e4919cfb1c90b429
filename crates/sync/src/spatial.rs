//! Interest management in space: a grid index over the cached entities, and an
//! area of interest that follows a moving point with hysteresis.
//!
//! Plain values: the cache keeps a [`SpatialIndex`] of its spatial table in
//! each published snapshot (positions read from rows by a [`Positions`]), and
//! the sync actor moves an [`AreaOfInterest`]. Which table, and which of its
//! columns hold the map, the position and the grid cell, is the game's
//! configuration ([`SpatialConfig`](crate::config::SpatialConfig)).

use std::fmt;
use std::sync::Arc;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

/// Reads a row's map and position from its bytes (without decoding it).
pub trait Positions: Send + Sync {
    /// `(map, x, y)` of `row`, or `None` if it has none (it is then not indexed).
    fn position(&self, row: &[u8]) -> Option<(u32, f32, f32)>;
}

/// What the cache indexes by position: the rows of `table`, placed by `positions`.
#[derive(Clone)]
pub struct SpatialSetup {
    /// The spatial table.
    pub table: Arc<str>,
    /// The index's cell size (map units).
    pub cell: f32,
    /// Where a row is.
    pub positions: Arc<dyn Positions>,
}

impl fmt::Debug for SpatialSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpatialSetup").field("table", &self.table).field("cell", &self.cell).finish_non_exhaustive()
    }
}

/// A uniform grid over 2D positions, keyed by row key bytes, per map.
#[derive(Debug, Clone)]
pub struct SpatialIndex<K> {
    cell: f32,
    cells: HashMap<(u32, i32, i32), HashSet<K>>,
    positions: HashMap<K, (u32, f32, f32)>,
}

impl<K: std::hash::Hash + Eq + Clone> Default for SpatialIndex<K> {
    fn default() -> Self {
        Self::new(10.0)
    }
}

impl<K: std::hash::Hash + Eq + Clone> SpatialIndex<K> {
    /// An empty index with square cells of side `cell` (map units).
    pub fn new(cell: f32) -> Self {
        Self {
            cell: if cell.is_finite() && cell > 0.0 { cell } else { 10.0 },
            cells: HashMap::default(),
            positions: HashMap::default(),
        }
    }

    fn cell_of(&self, x: f32, y: f32) -> (i32, i32) {
        ((x / self.cell).floor() as i32, (y / self.cell).floor() as i32)
    }

    /// Puts (or moves) `key` at `(x, y)` on `map`.
    pub fn upsert(&mut self, key: K, map: u32, x: f32, y: f32) {
        self.remove(&key);
        let (cx, cy) = self.cell_of(x, y);
        self.cells.entry((map, cx, cy)).or_default().insert(key.clone());
        self.positions.insert(key, (map, x, y));
    }

    /// Forgets `key`.
    pub fn remove(&mut self, key: &K) {
        if let Some((map, x, y)) = self.positions.remove(key) {
            let (cx, cy) = self.cell_of(x, y);
            if let Some(set) = self.cells.get_mut(&(map, cx, cy)) {
                set.remove(key);
                if set.is_empty() {
                    self.cells.remove(&(map, cx, cy));
                }
            }
        }
    }

    /// Keys within `radius` of `(x, y)` on `map`: only the cells the circle
    /// touches are visited, not every entity.
    pub fn within(&self, map: u32, x: f32, y: f32, radius: f32) -> Vec<K> {
        let radius = radius.max(0.0);
        let (x0, y0) = self.cell_of(x - radius, y - radius);
        let (x1, y1) = self.cell_of(x + radius, y + radius);
        let mut found = Vec::new();
        for cx in x0..=x1 {
            for cy in y0..=y1 {
                let Some(set) = self.cells.get(&(map, cx, cy)) else { continue };
                for key in set {
                    if let Some(&(_, px, py)) = self.positions.get(key) {
                        let (dx, dy) = (px - x, py - y);
                        if dx * dx + dy * dy <= radius * radius {
                            found.push(key.clone());
                        }
                    }
                }
            }
        }
        found
    }

    /// How many keys are indexed.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }
}

/// An area of interest around a moving point: the subscription covers
/// `radius + margin` around the point where it was made, and moves when the
/// point has gone more than half the margin from there. Walking about does not
/// resubscribe on every step, and the other half of the margin is the time the
/// new subscription has to arrive while the old one still covers everything
/// within `radius` of the point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AreaOfInterest {
    /// The map.
    pub map: u32,
    /// Where the current subscription is centred.
    pub center: (f32, f32),
    /// What must always be covered around the point.
    pub radius: f32,
    /// How far the point may move before the area moves.
    pub margin: f32,
    /// Cell size of the module's grid columns.
    pub cell: f32,
}

/// The columns an [`AreaOfInterest`]'s query filters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridColumns<'a> {
    /// The map column.
    pub map: &'a str,
    /// The grid cell's x column.
    pub cell_x: &'a str,
    /// The grid cell's y column.
    pub cell_y: &'a str,
}

impl AreaOfInterest {
    /// Whether the point at `pos` on `map` may stay without moving the area
    /// (within half the margin of its centre).
    pub fn covers(&self, map: u32, pos: (f32, f32)) -> bool {
        let (dx, dy) = (pos.0 - self.center.0, pos.1 - self.center.1);
        let threshold = self.margin / 2.0;
        map == self.map && dx * dx + dy * dy <= threshold * threshold
    }

    /// The same area moved to `pos` on `map`.
    pub fn moved_to(&self, map: u32, pos: (f32, f32)) -> Self {
        Self { map, center: pos, ..*self }
    }

    /// The grid cells `(x0, x1, y0, y1)`, inclusive, the area's subscription covers.
    pub fn cells(&self) -> (i32, i32, i32, i32) {
        let reach = self.radius + self.margin;
        let cell = |v: f32| (v / self.cell).floor() as i32;
        (
            cell(self.center.0 - reach),
            cell(self.center.0 + reach),
            cell(self.center.1 - reach),
            cell(self.center.1 + reach),
        )
    }

    /// The query for `table` over the area, filtering on its `columns`.
    pub fn query(&self, table: &str, columns: GridColumns<'_>) -> String {
        let (x0, x1, y0, y1) = self.cells();
        let GridColumns { map, cell_x: cx, cell_y: cy } = columns;
        format!(
            "SELECT * FROM {table} WHERE {map} = {} AND {cx} >= {x0} AND {cx} <= {x1} AND {cy} >= {y0} AND {cy} <= {y1}",
            self.map
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_is_within_the_radius_only() {
        let mut index = SpatialIndex::new(10.0);
        index.upsert(1u32, 1, 5.0, 5.0);
        index.upsert(2, 1, 14.0, 5.0);
        index.upsert(3, 1, 40.0, 40.0);
        index.upsert(4, 2, 5.0, 5.0);
        let mut near = index.within(1, 6.0, 5.0, 8.5);
        near.sort();
        assert_eq!(near, [1, 2]);
        index.upsert(2, 1, 39.0, 39.0);
        assert_eq!(index.within(1, 6.0, 5.0, 8.5), [1]);
        index.remove(&1);
        assert!(index.within(1, 6.0, 5.0, 8.5).is_empty());
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn the_area_moves_only_past_its_margin_and_always_covers_the_radius() {
        let area = AreaOfInterest { map: 1, center: (50.0, 50.0), radius: 15.0, margin: 5.0, cell: 10.0 };
        assert!(area.covers(1, (51.5, 51.5)));
        assert!(!area.covers(1, (53.0, 54.0)));
        assert!(!area.covers(2, (50.0, 50.0)));
        assert_eq!(area.cells(), (3, 7, 3, 7));
        assert_eq!(
            area.query("thing", GridColumns { map: "world", cell_x: "gx", cell_y: "gy" }),
            "SELECT * FROM thing WHERE world = 1 AND gx >= 3 AND gx <= 7 AND gy >= 3 AND gy <= 7"
        );
        // A point anywhere within the margin still has its whole radius inside the cells.
        let (x0, x1, y0, y1) = area.cells();
        let (px, py) = (54.9, 50.0);
        assert!(!area.covers(1, (px, py)), "past half the margin: time to move");
        assert!(((px - 15.0) / 10.0).floor() as i32 >= x0 && ((px + 15.0) / 10.0).floor() as i32 <= x1);
        assert!(((py - 15.0) / 10.0).floor() as i32 >= y0 && ((py + 15.0) / 10.0).floor() as i32 <= y1);
    }
}
