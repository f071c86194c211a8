//! The registry's own error: [`DuplicateName`].

/// A component could not be registered: a live component already has that
/// name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a component named `{name}` is already registered")]
pub struct DuplicateName {
    /// The name asked for.
    pub name: String,
}
