//! Underlay UDP socket (written elsewhere).
