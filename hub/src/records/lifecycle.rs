//! The record lifecycle as an explicit state machine (docs/records.md, "Lifecycle"): which
//! action leads from which state to which, and who may take it.

use common::RecordAction as A;
use common::RecordState as S;

/// The states `action` may be taken from (empty for the hub's own actions).
pub fn from_states(action: A) -> &'static [S] {
    match action {
        A::Create | A::Escalate | A::Attach => &[],
        A::Distribute => &[S::New, S::Returned],
        A::Claim => &[S::Distributed],
        A::Assign => &[S::Claimed, S::Assigned],
        A::Result => &[S::Assigned],
        A::Feedback => &[S::Resulted],
        A::Close => &[S::FedBack],
        A::Reopen => &[S::Closed],
        A::Return => &[S::Distributed, S::Claimed, S::Assigned],
    }
}

/// The actions people may take: what a 409 lists as allowed.
pub const PERSON_ACTIONS: &[A] =
    &[A::Distribute, A::Claim, A::Assign, A::Result, A::Feedback, A::Close, A::Reopen, A::Return];

/// The actions a person may take from `state`.
pub fn allowed(state: S) -> Vec<A> {
    PERSON_ACTIONS.iter().copied().filter(|a| from_states(*a).contains(&state)).collect()
}

/// Where `action` leads from `state`, or the 409 message: the current state, where the action
/// is allowed from and what is allowed now. `others_remain`: for a return, whether candidate
/// departments other than the returning one are left (it then goes back to them).
pub fn next(id: i64, state: S, action: A, others_remain: bool) -> Result<S, String> {
    if !from_states(action).contains(&state) {
        let from: Vec<&str> = from_states(action).iter().map(|s| s.as_str()).collect();
        let now: Vec<&str> = allowed(state).iter().map(|a| a.as_str()).collect();
        return Err(format!(
            "record {id} is {state}; {action} is allowed from {} (allowed now: {})",
            if from.is_empty() {
                "no state (the hub's own action)".into()
            } else {
                from.join(", ")
            },
            if now.is_empty() { "nothing".into() } else { now.join(", ") },
        ));
    }
    Ok(match action {
        A::Distribute => S::Distributed,
        A::Claim => S::Claimed,
        A::Assign => S::Assigned,
        A::Result => S::Resulted,
        A::Feedback => S::FedBack,
        A::Close => S::Closed,
        A::Reopen => S::Claimed,
        A::Return if others_remain => S::Distributed,
        A::Return => S::Returned,
        A::Create | A::Escalate | A::Attach => state,
    })
}

/// The event type of a transition (`record.claimed`, …).
pub fn event_type(action: A) -> &'static str {
    match action {
        A::Create => "record.created",
        A::Distribute => "record.distributed",
        A::Claim => "record.claimed",
        A::Assign => "record.assigned",
        A::Result => "record.resulted",
        A::Feedback => "record.fed_back",
        A::Close => "record.closed",
        A::Reopen => "record.reopened",
        A::Return => "record.returned",
        A::Escalate => "record.escalated",
        A::Attach => "record.finding_attached",
    }
}

/// Every event type, for subscriptions' filters.
pub fn event_types() -> Vec<&'static str> {
    A::ALL.iter().map(|a| event_type(*a)).collect()
}

/// Who is acting on a record.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The caller's department, if any.
    pub department: Option<String>,
    /// Duty-room operators and admins (who route, close and reopen for the hub).
    pub duty: bool,
}

/// The record's facts the rules look at.
pub struct Holder<'a> {
    pub candidates: &'a [String],
    pub department: Option<&'a str>,
}

/// Whether `actor` may take `action` on a record held as `holder`; the 403 message otherwise.
pub fn may(action: A, actor: &Actor, holder: &Holder<'_>) -> Result<(), String> {
    let mine = |d: &str| actor.department.as_deref() == Some(d);
    let candidate = holder.candidates.iter().any(|c| mine(c));
    let claimant = holder.department.is_some_and(mine);
    let ok = match action {
        A::Distribute => actor.duty,
        A::Claim => candidate,
        A::Assign | A::Result | A::Feedback => claimant,
        A::Close | A::Reopen => claimant || actor.duty,
        A::Return => claimant || (holder.department.is_none() && candidate),
        A::Create | A::Escalate | A::Attach => false,
    };
    if ok {
        return Ok(());
    }
    let held = match holder.department {
        Some(d) => format!("it is held by department {d}"),
        None if holder.candidates.is_empty() => "it has no candidate department".into(),
        None => format!("its candidate departments are {}", holder.candidates.join(", ")),
    };
    Err(match action {
        A::Distribute => "only the duty room distributes records".into(),
        _ => format!(
            "{action} needs {}; {held}",
            match action {
                A::Claim => "a candidate department",
                A::Close | A::Reopen => "the claiming department or the duty room",
                _ => "the claiming department",
            }
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_path_and_back() {
        let mut s = S::Distributed;
        for a in [A::Claim, A::Assign, A::Result, A::Feedback, A::Close, A::Reopen] {
            s = next(1, s, a, false).unwrap();
        }
        assert_eq!(s, S::Claimed);
        assert_eq!(next(1, S::Claimed, A::Return, true).unwrap(), S::Distributed);
        assert_eq!(next(1, S::Claimed, A::Return, false).unwrap(), S::Returned);
        assert_eq!(next(1, S::Returned, A::Distribute, false).unwrap(), S::Distributed);
    }

    #[test]
    fn an_invalid_transition_names_the_state_and_the_allowed_ones() {
        let e = next(42, S::Closed, A::Claim, false).unwrap_err();
        assert_eq!(
            e,
            "record 42 is closed; claim is allowed from distributed (allowed now: reopen)"
        );
        let e = next(7, S::Distributed, A::Close, false).unwrap_err();
        assert!(e.contains("allowed now: claim, return"), "{e}");
    }

    #[test]
    fn every_state_but_one_has_a_way_on() {
        for s in S::ALL {
            assert!(!allowed(*s).is_empty(), "{s} is a dead end");
        }
    }

    #[test]
    fn only_the_holder_acts() {
        let xian = Actor { department: Some("xian".into()), duty: false };
        let other = Actor { department: Some("other".into()), duty: false };
        let duty = Actor { department: None, duty: true };
        let candidates = vec!["xian".to_owned(), "b".to_owned()];
        let open = Holder { candidates: &candidates, department: None };
        assert!(may(A::Claim, &xian, &open).is_ok());
        assert!(may(A::Claim, &other, &open).unwrap_err().contains("xian, b"));
        assert!(may(A::Claim, &duty, &open).is_err());
        let held = Holder { candidates: &candidates, department: Some("xian") };
        assert!(may(A::Assign, &xian, &held).is_ok());
        assert!(may(A::Assign, &other, &held).unwrap_err().contains("held by department xian"));
        assert!(may(A::Close, &duty, &held).is_ok());
        assert!(may(A::Distribute, &xian, &held).is_err());
        // A candidate who did not claim cannot return what another claimed.
        let b = Actor { department: Some("b".into()), duty: false };
        assert!(may(A::Return, &b, &held).is_err());
    }
}
