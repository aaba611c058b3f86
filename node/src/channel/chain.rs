//! Where a verified post (or an expiry proof) stands against an author's chain as held: new,
//! a duplicate, or a conflict (the author signed two different posts for one place). The
//! same rule for gossip and history sync, so a forked chain is caught whichever way it comes.

use super::PostId;

/// What a slot of an author's chain holds: the post's id and, when known, its `prev`.
pub type Slot = (PostId, Option<PostId>);

/// Where a post stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainCheck {
    /// Not held and consistent with its neighbours: store it.
    New,
    /// Held already.
    Duplicate,
    /// Contradicts what is held (the first one seen is kept; the forwarder may be honest).
    Conflict,
}

/// Checks the post `id` at `seq` (whose predecessor it names as `prev`) against the chain,
/// read through `slot(seq)`; `held(id)` tells whether the post is held anywhere.
pub fn check<E>(
    seq: u64,
    id: PostId,
    prev: Option<PostId>,
    slot: impl Fn(u64) -> Result<Option<Slot>, E>,
    held: impl FnOnce(&PostId) -> Result<bool, E>,
) -> Result<ChainCheck, E> {
    if let Some((existing, _)) = slot(seq)? {
        return Ok(if existing == id {
            ChainCheck::Duplicate
        } else {
            ChainCheck::Conflict
        });
    }
    if held(&id)? {
        return Ok(ChainCheck::Duplicate);
    }
    // The predecessor held is not the one this post names.
    if let Some(prev) = prev
        && let Some(before) = seq.checked_sub(1)
        && let Some((held, _)) = slot(before)?
        && held != prev
    {
        return Ok(ChainCheck::Conflict);
    }
    // The successor held names another predecessor.
    if let Some(after) = seq.checked_add(1)
        && let Some((_, Some(next_prev))) = slot(after)?
        && next_prev != id
    {
        return Ok(ChainCheck::Conflict);
    }
    Ok(ChainCheck::New)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::convert::Infallible;

    use super::*;

    fn id(n: u8) -> PostId {
        PostId([n; 32])
    }

    /// A chain 1 ← 2 ← 3 held at seqs 1..=3, and `extra` slots.
    fn chain(extra: &[(u64, Slot)]) -> HashMap<u64, Slot> {
        let mut c: HashMap<u64, Slot> = [
            (1, (id(1), None)),
            (2, (id(2), Some(id(1)))),
            (3, (id(3), Some(id(2)))),
        ]
        .into();
        c.extend(extra.iter().copied());
        c
    }

    fn run(c: &HashMap<u64, Slot>, seq: u64, post: PostId, prev: Option<PostId>) -> ChainCheck {
        let held: Vec<PostId> = c.values().map(|(p, _)| *p).collect();
        check::<Infallible>(
            seq,
            post,
            prev,
            |s| Ok(c.get(&s).copied()),
            |p| Ok(held.contains(p)),
        )
        .unwrap()
    }

    #[test]
    fn the_next_post_is_new_and_a_replay_a_duplicate() {
        let c = chain(&[]);
        assert_eq!(run(&c, 4, id(4), Some(id(3))), ChainCheck::New);
        assert_eq!(run(&c, 2, id(2), Some(id(1))), ChainCheck::Duplicate);
        assert_eq!(
            run(&c, 9, id(9), Some(id(8))),
            ChainCheck::New,
            "a gap is fine"
        );
    }

    #[test]
    fn a_second_post_for_a_place_or_one_that_breaks_a_link_is_a_conflict() {
        let c = chain(&[]);
        assert_eq!(
            run(&c, 2, id(7), Some(id(1))),
            ChainCheck::Conflict,
            "same seq"
        );
        assert_eq!(
            run(&c, 4, id(7), Some(id(9))),
            ChainCheck::Conflict,
            "wrong prev"
        );
        // A post slotting in before a held successor that names another predecessor.
        let gap = chain(&[(6, (id(6), Some(id(5))))]);
        assert_eq!(
            run(&gap, 5, id(5), Some(id(4))),
            ChainCheck::New,
            "nothing held at 4 to contradict"
        );
        assert_eq!(
            run(&gap, 5, id(8), None),
            ChainCheck::Conflict,
            "6 names another 5"
        );
        assert_eq!(run(&gap, 5, id(5), None), ChainCheck::New);
    }

    #[test]
    fn a_post_held_under_another_place_is_a_duplicate_and_extreme_seqs_do_not_overflow() {
        let c = chain(&[]);
        assert_eq!(run(&c, 40, id(3), None), ChainCheck::Duplicate);
        assert_eq!(run(&c, 0, id(10), Some(id(11))), ChainCheck::New);
        let top = chain(&[(u64::MAX, (id(20), None))]);
        assert_eq!(run(&top, u64::MAX, id(21), None), ChainCheck::Conflict);
        assert_eq!(run(&top, u64::MAX - 1, id(22), None), ChainCheck::New);
    }
}
