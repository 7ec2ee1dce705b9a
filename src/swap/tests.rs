//! Table-driven and property tests of the Loop Out state machine.
