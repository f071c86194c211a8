//! The registry's own error: [`DuplicateName`].

/// A component could not be registered: a live component already has that
/// name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a component named `{name}` is already registered, by a component of kind `{held_by}`")]
pub struct DuplicateName {
    /// The name asked for.
    pub name: String,
    /// The kind of the component that holds it (`breaker`, `instrument`,
    /// ...), as [`ComponentKind::as_str`](battlement_core::ComponentKind::as_str)
    /// names it.
    pub held_by: String,
}
