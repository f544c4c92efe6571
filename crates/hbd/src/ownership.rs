//! Who should own the group, decided the same way on every node from what
//! it sees: among the live, eligible nodes, the one that has not failed
//! the group, then the best connectivity score, then the operator's latest
//! takeover (or away from its latest standby), then the preferred node
//! (`auto_failback: true`) or the current owner (`false`), then priority,
//! then the smallest name. Pure: no clock, no I/O.

use std::cmp::Reverse;

/// What the ranking needs to know of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// Its name.
    pub name: &'a str,
    /// Whether it may take the group at all now.
    pub eligible: bool,
    /// Its group failed and it has not run it since.
    pub failed: bool,
    /// How many of its ping targets answer.
    pub score: u32,
    /// Operator preference: > 0 after Takeover, < 0 after Standby.
    pub preference: i64,
    /// Whether it advertises ACTIVE.
    pub active: bool,
    /// The epoch under which it took the group (0 unless active).
    pub term: u64,
    /// Its configured priority.
    pub priority: u32,
}

/// The tie-breaker after score and operator preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stickiness<'a> {
    /// `auto_failback: true`: the preferred node wins.
    Preferred(&'a str),
    /// `auto_failback: false`: the current owner (the ACTIVE node with the
    /// highest term) keeps the group.
    CurrentOwner,
}

/// The node that should own the group, if any is eligible.
pub fn owner<'a>(candidates: &[Candidate<'a>], stickiness: Stickiness<'_>) -> Option<&'a str> {
    let current = current_owner(candidates);
    candidates
        .iter()
        .filter(|c| c.eligible)
        .max_by_key(|c| {
            let sticky = match stickiness {
                Stickiness::Preferred(name) => c.name == name,
                Stickiness::CurrentOwner => Some(c.name) == current,
            };
            (
                !c.failed,
                c.score,
                c.preference,
                sticky,
                c.priority,
                Reverse(c.name),
            )
        })
        .map(|c| c.name)
}

/// The ACTIVE node with the highest term; none when nobody is active or
/// two share the highest term.
fn current_owner<'a>(candidates: &[Candidate<'a>]) -> Option<&'a str> {
    let top = candidates
        .iter()
        .filter(|c| c.active)
        .map(|c| c.term)
        .max()?;
    let mut at_top = candidates.iter().filter(|c| c.active && c.term == top);
    let first = at_top.next()?;
    at_top.next().is_none().then_some(first.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, priority: u32) -> Candidate<'_> {
        Candidate {
            name,
            eligible: true,
            failed: false,
            score: 0,
            preference: 0,
            active: false,
            term: 0,
            priority,
        }
    }

    #[test]
    fn priority_then_name() {
        let nodes = [node("b", 100), node("a", 100), node("c", 90)];
        assert_eq!(owner(&nodes, Stickiness::CurrentOwner), Some("a"));
        let nodes = [node("b", 100), node("a", 90)];
        assert_eq!(owner(&nodes, Stickiness::CurrentOwner), Some("b"));
    }

    #[test]
    fn score_beats_everything_but_failure() {
        let mut a = node("a", 200);
        a.preference = 9;
        let mut b = node("b", 100);
        b.score = 2;
        assert_eq!(
            owner(&[a.clone(), b.clone()], Stickiness::Preferred("a")),
            Some("b")
        );
        b.failed = true;
        assert_eq!(owner(&[a, b], Stickiness::Preferred("a")), Some("a"));
    }

    #[test]
    fn auto_failback_on_prefers_preferred_off_keeps_owner() {
        let a = node("a", 100);
        let mut b = node("b", 100);
        b.active = true;
        b.term = 4;
        let nodes = [a, b];
        assert_eq!(owner(&nodes, Stickiness::Preferred("a")), Some("a"));
        assert_eq!(owner(&nodes, Stickiness::CurrentOwner), Some("b"));
    }

    #[test]
    fn two_actives_the_higher_term_is_the_owner() {
        let mut a = node("a", 200);
        a.active = true;
        a.term = 5;
        let mut b = node("b", 100);
        b.active = true;
        b.term = 6;
        assert_eq!(
            owner(&[a.clone(), b.clone()], Stickiness::CurrentOwner),
            Some("b")
        );
        // Equal terms: no current owner, priority decides.
        b.term = 5;
        assert_eq!(owner(&[a, b], Stickiness::CurrentOwner), Some("a"));
    }

    #[test]
    fn operator_preference_latest_wins() {
        let mut a = node("a", 100);
        let mut b = node("b", 50);
        b.preference = 3;
        assert_eq!(
            owner(&[a.clone(), b.clone()], Stickiness::Preferred("a")),
            Some("b")
        );
        a.preference = 4;
        assert_eq!(
            owner(&[a.clone(), b.clone()], Stickiness::Preferred("a")),
            Some("a")
        );
        // A standby ranks below a node with none.
        a.preference = -5;
        b.preference = 0;
        assert_eq!(owner(&[a, b], Stickiness::Preferred("a")), Some("b"));
    }

    #[test]
    fn ineligible_nodes_never_win() {
        let mut a = node("a", 100);
        a.eligible = false;
        assert_eq!(owner(&[a.clone()], Stickiness::CurrentOwner), None);
        assert_eq!(
            owner(&[a, node("b", 1)], Stickiness::CurrentOwner),
            Some("b")
        );
    }
}
