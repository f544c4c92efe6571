//! Rise and fall: consecutive probe results turned into a health verdict.
//! A real goes down after `fall` failures in a row and comes up after
//! `rise` successes in a row, so a target that flaps within `fall` never
//! goes down. Before either count is reached the verdict is unknown, which
//! ipvsd treats as up (as ldirectord does).

use tandem_ipvsd::effective::Health;

/// The counts behind one target's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RiseFall {
    rise: u32,
    fall: u32,
    health: Health,
    successes: u32,
    failures: u32,
}

impl RiseFall {
    /// A target not probed yet.
    pub fn new(rise: u32, fall: u32) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            health: Health::Unknown,
            successes: 0,
            failures: 0,
        }
    }

    /// Takes new thresholds (a changed spec), keeping the verdict.
    pub fn retune(&mut self, rise: u32, fall: u32) {
        self.rise = rise.max(1);
        self.fall = fall.max(1);
    }

    /// Counts one result; returns the new health if it changed.
    pub fn record(&mut self, ok: bool) -> Option<Health> {
        let next = if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            (self.successes >= self.rise).then_some(Health::Up)
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            (self.failures >= self.fall).then_some(Health::Down)
        };
        match next {
            Some(h) if h != self.health => {
                self.health = h;
                Some(h)
            }
            _ => None,
        }
    }

    /// Sets the verdict outright (checks of type `on`/`off`).
    pub fn force(&mut self, health: Health) -> Option<Health> {
        (self.health != health).then(|| {
            self.health = health;
            health
        })
    }

    /// The verdict.
    pub fn health(&self) -> Health {
        self.health
    }

    /// Consecutive successes so far.
    pub fn successes(&self) -> u32 {
        self.successes
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rf: &mut RiseFall, results: &str) -> Vec<Option<Health>> {
        results.chars().map(|c| rf.record(c == '+')).collect()
    }

    #[test]
    fn falls_after_exactly_fall_failures() {
        let mut rf = RiseFall::new(2, 3);
        assert_eq!(run(&mut rf, "--"), [None, None]);
        assert_eq!(rf.health(), Health::Unknown);
        assert_eq!(rf.record(false), Some(Health::Down));
        assert_eq!(rf.record(false), None);
    }

    #[test]
    fn rises_after_exactly_rise_successes() {
        let mut rf = RiseFall::new(3, 1);
        assert_eq!(rf.record(false), Some(Health::Down));
        assert_eq!(run(&mut rf, "++"), [None, None]);
        assert_eq!(rf.record(true), Some(Health::Up));
        assert_eq!(rf.successes(), 3);
    }

    #[test]
    fn flapping_within_fall_never_goes_down() {
        let mut rf = RiseFall::new(1, 3);
        assert_eq!(rf.record(true), Some(Health::Up));
        let changes = run(&mut rf, "--+--+--+-+--");
        assert!(changes.iter().all(Option::is_none), "{changes:?}");
        assert_eq!(rf.health(), Health::Up);
        assert_eq!(rf.failures(), 2);
    }

    #[test]
    fn a_failure_resets_the_rise_count() {
        let mut rf = RiseFall::new(2, 1);
        rf.record(false);
        assert_eq!(run(&mut rf, "+-+-+-"), [None; 6]);
        assert_eq!(rf.health(), Health::Down);
    }

    #[test]
    fn zero_thresholds_mean_one() {
        let mut rf = RiseFall::new(0, 0);
        assert_eq!(rf.record(false), Some(Health::Down));
        assert_eq!(rf.record(true), Some(Health::Up));
    }
}
