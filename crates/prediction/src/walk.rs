//! A ready model for the commonest case: a point walking on a plane by steps.

use crate::model::PredictionModel;

/// A position on a plane.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Position {
    /// x.
    pub x: f32,
    /// y.
    pub y: f32,
}

/// A step on a plane.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Step {
    /// Along x.
    pub dx: f32,
    /// Along y.
    pub dy: f32,
}

/// A point that moves by each step it is given, optionally kept within a
/// rectangle and with steps no longer than `max_step` (to predict a server
/// that clamps the same way; leave them `None` to predict without).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Walk {
    /// The longest step, if the server clamps steps.
    pub max_step: Option<f32>,
    /// `(min, max)` corners the position is clamped to, if any.
    pub bounds: Option<(Position, Position)>,
}

impl PredictionModel for Walk {
    type State = Position;
    type Input = Step;

    fn apply(&self, state: &mut Position, input: &Step) {
        let (mut dx, mut dy) = (input.dx, input.dy);
        if let Some(max) = self.max_step {
            let len = (dx * dx + dy * dy).sqrt();
            if len > max {
                let k = max / len;
                dx *= k;
                dy *= k;
            }
        }
        state.x += dx;
        state.y += dy;
        if let Some((lo, hi)) = self.bounds {
            state.x = state.x.clamp(lo.x, hi.x);
            state.y = state.y.clamp(lo.y, hi.y);
        }
    }

    fn distance(&self, a: &Position, b: &Position) -> f32 {
        ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt()
    }

    fn blend(&self, shown: &mut Position, target: &Position, t: f32) {
        shown.x += (target.x - shown.x) * t;
        shown.y += (target.y - shown.y) * t;
    }
}
