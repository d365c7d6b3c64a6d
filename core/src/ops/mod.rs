//! The operations: one file each, every one an `impl Repository` block (rustdoc shows them on
//! the one [`crate::Repository`] page). An operation uses the stage and format modules and the
//! shared helpers below it ([`crate::blob`], [`crate::scan`], [`crate::keyfile`],
//! [`crate::upkeep`]), never another operation.

pub mod ingest;
pub mod keys;
pub mod prune;
pub mod reindex;
pub mod repair;
pub mod restore;
pub mod restore_plan;
pub mod stats;
pub mod verify;
