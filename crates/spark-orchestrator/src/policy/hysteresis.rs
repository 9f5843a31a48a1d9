//! A two-threshold switch: it turns on after `enter` consecutive ticks of the on-condition and
//! off after `exit` consecutive ticks of the off-condition, so a signal hovering near one
//! threshold cannot make the plan flap.

use serde::{Deserialize, Serialize};

/// A switch that flips only after enough consecutive ticks of its on- or off-condition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hysteresis {
    /// Whether the switch is on.
    pub active: bool,
    streak: u32,
}

impl Hysteresis {
    /// Feeds one tick. `on` and `off` are the two conditions (both false: hold). Returns
    /// `Some(new_state)` when the switch flips.
    pub fn update(&mut self, on: bool, off: bool, enter: u32, exit: u32) -> Option<bool> {
        let towards = if self.active { off } else { on };
        if !towards {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.active { exit } else { enter };
        if self.streak < needed.max(1) {
            return None;
        }
        self.active = !self.active;
        self.streak = 0;
        Some(self.active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_consecutive_ticks_each_way() {
        let mut h = Hysteresis::default();
        assert_eq!(h.update(true, false, 2, 3), None);
        assert_eq!(
            h.update(false, false, 2, 3),
            None,
            "a gap resets the streak"
        );
        assert_eq!(h.update(true, false, 2, 3), None);
        assert_eq!(h.update(true, false, 2, 3), Some(true));
        assert_eq!(h.update(false, true, 2, 3), None);
        assert_eq!(h.update(false, true, 2, 3), None);
        assert_eq!(
            h.update(true, false, 2, 3),
            None,
            "on again while active resets the exit streak"
        );
        for _ in 0..2 {
            assert_eq!(h.update(false, true, 2, 3), None);
        }
        assert_eq!(h.update(false, true, 2, 3), Some(false));
        assert!(!h.active);
    }
}
