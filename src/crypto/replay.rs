//! The receiver's anti-replay window (RFC 4303 §3.4.3) over 64-bit extended sequence numbers
//! inferred from the 32 bits on the wire (RFC 4303 Appendix A2).
//!
//! Use it in three steps, in this order: `infer_seq64` from the packet's low 32 bits, `check`
//! before spending time on decryption, and `commit` only after the ICV has verified — otherwise
//! a forged packet could move the window and make genuine ones look like replays.
//!
//! The bitmap is a ring of 64-bit words indexed by sequence number, as in the Linux kernel and
//! boringtun: advancing the window clears the words it passes instead of shifting the whole
//! map. One word more than the window needs means the word being refilled never aliases a live
//! one. No allocation.

/// Sequence numbers accepted behind the highest one seen (RFC 4303 §3.4.3: at least 32, 64 by
/// default; a larger window tolerates more reordering from multi-queue NICs).
pub const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize + 1;

#[derive(Clone, Debug)]
pub struct ReplayWindow {
    /// Highest sequence number that verified; 0 while none has (ESP numbers start at 1).
    top: u64,
    bitmap: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow::new()
    }
}

impl ReplayWindow {
    pub fn new() -> ReplayWindow {
        ReplayWindow {
            top: 0,
            bitmap: [0; WORDS],
        }
    }

    /// The highest sequence number accepted so far (0: none).
    pub fn top(&self) -> u64 {
        self.top
    }

    /// The 64-bit sequence number that `seq_low` most likely belongs to (RFC 4303 A2.2): the one
    /// inside the window or ahead of it. A wrong guess is harmless: the high half is part of the
    /// AAD, so the ICV fails.
    pub fn infer_seq64(&self, seq_low: u32) -> u64 {
        infer_seq64(self.top, seq_low)
    }

    /// Whether `seq` is new: ahead of the window, or inside it and not yet seen.
    pub fn check(&self, seq: u64) -> bool {
        if seq == 0 {
            return false;
        }
        if seq > self.top {
            return true;
        }
        if self.top - seq >= WINDOW {
            return false;
        }
        let (w, bit) = slot(seq);
        self.bitmap[w] & bit == 0
    }

    /// Marks `seq` as received, moving the window forward if it is the newest. Call only for a
    /// packet whose ICV verified and that `check` accepted.
    pub fn commit(&mut self, seq: u64) {
        if seq > self.top {
            let old_word = self.top / 64;
            let new_word = seq / 64;
            let clear = (new_word - old_word).min(WORDS as u64);
            for i in 1..=clear {
                self.bitmap[((old_word + i) % WORDS as u64) as usize] = 0;
            }
            self.top = seq;
        }
        let (w, bit) = slot(seq);
        self.bitmap[w] |= bit;
    }
}

fn slot(seq: u64) -> (usize, u64) {
    (((seq / 64) % WORDS as u64) as usize, 1 << (seq % 64))
}

/// RFC 4303 Appendix A2.2 with `top` the highest verified number (T) and window size W.
///
/// Case A (the window lies in one 2^32 subspace): a low half at or above the window's bottom is
/// in T's subspace, anything below it is in the next. Case B (the window straddles a subspace
/// boundary): a low half at or above the bottom is in the previous subspace, anything below it
/// in T's. While T's subspace is the first there is no previous one, so case B answers T's.
pub fn infer_seq64(top: u64, seq_low: u32) -> u64 {
    let tl = top as u32;
    let th = top >> 32;
    let bottom = tl.wrapping_sub(WINDOW as u32 - 1);
    let hi = if tl >= WINDOW as u32 - 1 {
        if seq_low >= bottom {
            th
        } else {
            th + 1
        }
    } else if seq_low >= bottom && th > 0 {
        th - 1
    } else {
        th
    };
    hi << 32 | seq_low as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(w: &mut ReplayWindow, seq: u64) -> bool {
        let ok = w.check(seq);
        if ok {
            w.commit(seq);
        }
        ok
    }

    #[test]
    fn in_order_once() {
        let mut w = ReplayWindow::new();
        assert!(!w.check(0), "0 is never a valid sequence number");
        for s in 1..5000 {
            assert!(accept(&mut w, s));
            assert!(!accept(&mut w, s), "replay of {s}");
        }
        assert_eq!(w.top(), 4999);
    }

    #[test]
    fn out_of_order_within_window_once() {
        let mut w = ReplayWindow::new();
        assert!(accept(&mut w, 2000));
        // Everything in (2000 - 1024, 2000) is accepted exactly once, in any order.
        for s in (2000 - WINDOW + 1..2000).rev().step_by(3) {
            assert!(accept(&mut w, s), "{s}");
            assert!(!accept(&mut w, s), "{s} twice");
        }
        assert!(!w.check(2000 - WINDOW), "just behind the window");
        assert!(!w.check(1));
        assert!(w.check(2000 - WINDOW + 2));
    }

    #[test]
    fn big_jump_clears_everything() {
        let mut w = ReplayWindow::new();
        for s in 1..=100 {
            w.commit(s);
        }
        assert!(accept(&mut w, 100 + 10 * WINDOW));
        for s in 100 + 9 * WINDOW + 1..100 + 10 * WINDOW {
            assert!(w.check(s), "{s} was never received");
        }
    }

    #[test]
    fn jump_by_words_keeps_recent_bits() {
        let mut w = ReplayWindow::new();
        for s in 1..=1000 {
            w.commit(s);
        }
        w.commit(1000 + 64 * 3 + 5);
        for s in 1000 + 64 * 3 + 5 - WINDOW + 1..=1000 {
            assert!(!w.check(s), "{s} was received");
        }
        for s in 1001..1000 + 64 * 3 + 5 {
            assert!(w.check(s), "{s} was not");
        }
    }

    #[test]
    fn commit_without_check_is_not_done_on_failure() {
        // The caller checks, decrypts, and commits only on success: a checked but uncommitted
        // number stays acceptable.
        let mut w = ReplayWindow::new();
        assert!(w.check(10));
        assert!(w.check(10));
        w.commit(10);
        assert!(!w.check(10));
    }

    #[test]
    fn esn_inference() {
        const W: u64 = WINDOW;
        // Fresh window: everything is in subspace 0.
        assert_eq!(infer_seq64(0, 1), 1);
        assert_eq!(infer_seq64(0, u32::MAX - 4), (1 << 32) - 5);
        // Case A: window inside one subspace; below the bottom means the next subspace.
        let t = (3u64 << 32) | 5000;
        assert_eq!(infer_seq64(t, 4000), (3 << 32) | 4000);
        assert_eq!(infer_seq64(t, 6000), (3 << 32) | 6000);
        assert_eq!(infer_seq64(t, 10), (4 << 32) | 10);
        // Case B: window straddles 2^32 * 3.
        let t = (3u64 << 32) | 10;
        assert_eq!(infer_seq64(t, u32::MAX), (2 << 32) | u32::MAX as u64);
        assert_eq!(infer_seq64(t, 11), (3 << 32) | 11);
        assert_eq!(infer_seq64(t, 5), (3 << 32) | 5);
        // Top of a subspace: the next low numbers belong to the following one.
        let t = (1u64 << 32) - 1;
        assert_eq!(infer_seq64(t, 2), (1 << 32) | 2);
        assert_eq!(infer_seq64(t, (t - W + 1) as u32), t - W + 1);
    }

    #[test]
    fn esn_crossing_boundary() {
        let mut w = ReplayWindow::new();
        let start = (1u64 << 32) - 5;
        // Sent in order start..start+10, received with some reordering across 2^32.
        let order = [0u64, 1, 3, 2, 5, 4, 6, 9, 8, 7];
        for i in order {
            let seq = start + i;
            let inferred = w.infer_seq64(seq as u32);
            assert_eq!(inferred, seq);
            assert!(accept(&mut w, inferred));
        }
        for i in order {
            let seq = start + i;
            let inferred = w.infer_seq64(seq as u32);
            assert!(!accept(&mut w, inferred), "replay {i}");
        }
        assert_eq!(w.top(), (1 << 32) + 4);
    }
}
