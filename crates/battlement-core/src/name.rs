//! [`Name`]: a component's name, copied into every error and event it
//! makes.

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// A component's name, shared cheaply between a layer, its handle, its
/// errors and its events.
///
/// A name written in the program (`&'static str`) is copied as a pointer:
/// copying it into a rejection (a [`CircuitOpen`](crate::CircuitOpen), a
/// [`Shed`](crate::Shed)) counts nothing. A name made at run time (a
/// `String`, from a config file) is shared through an `Arc<str>`, one
/// atomic count per copy. It reads as a `&str` either way.
///
/// ```
/// use battlement_core::Name;
///
/// let written = Name::from("inventory");
/// let made = Name::from(format!("shard-{}", 7));
/// assert_eq!(written, "inventory");
/// assert_eq!(&*made, "shard-7");
/// assert!(written.is_static() && !made.is_static());
/// // a `&str` that does not live for the whole program is copied once
/// let borrowed = String::from("orders");
/// assert_eq!(Name::copied(&borrowed), "orders");
/// ```
#[derive(Clone)]
pub struct Name(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Name {
    /// A name written in the program: copies count nothing.
    pub const fn from_static(name: &'static str) -> Self {
        Name(Repr::Static(name))
    }

    /// A copy of `name`, shared from here on.
    pub fn copied(name: &str) -> Self {
        Name(Repr::Shared(Arc::from(name)))
    }

    /// The name.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Shared(s) => s,
        }
    }

    /// Whether the name is a `&'static str` (copied without counting).
    pub const fn is_static(&self) -> bool {
        matches!(self.0, Repr::Static(_))
    }
}

impl Default for Name {
    fn default() -> Self {
        Name::from_static("")
    }
}

impl Deref for Name {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, other: &Name) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        *self == other.as_str()
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl From<&'static str> for Name {
    fn from(name: &'static str) -> Self {
        Name::from_static(name)
    }
}

impl From<String> for Name {
    fn from(name: String) -> Self {
        Name(Repr::Shared(Arc::from(name)))
    }
}

impl From<&String> for Name {
    fn from(name: &String) -> Self {
        Name::copied(name)
    }
}

impl From<Box<str>> for Name {
    fn from(name: Box<str>) -> Self {
        Name(Repr::Shared(Arc::from(name)))
    }
}

impl From<Arc<str>> for Name {
    fn from(name: Arc<str>) -> Self {
        Name(Repr::Shared(name))
    }
}

impl From<&Arc<str>> for Name {
    fn from(name: &Arc<str>) -> Self {
        Name(Repr::Shared(Arc::clone(name)))
    }
}

impl From<Cow<'static, str>> for Name {
    fn from(name: Cow<'static, str>) -> Self {
        match name {
            Cow::Borrowed(s) => Name::from_static(s),
            Cow::Owned(s) => Name::from(s),
        }
    }
}

impl From<&Name> for Name {
    fn from(name: &Name) -> Self {
        name.clone()
    }
}

impl From<Name> for Arc<str> {
    fn from(name: Name) -> Self {
        match name.0 {
            Repr::Static(s) => Arc::from(s),
            Repr::Shared(s) => s,
        }
    }
}

impl From<Name> for String {
    fn from(name: Name) -> Self {
        name.as_str().to_owned()
    }
}

impl serde::Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Name::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn static_and_shared_names_compare_and_hash_as_their_text() {
        let a = Name::from("db");
        let b = Name::from(String::from("db"));
        assert_eq!(a, b);
        let mut map = HashMap::new();
        map.insert(a, 1);
        assert_eq!(map.get("db"), Some(&1));
        assert_eq!(map.get(&b), Some(&1));
        let (a, b) = (Name::from("a"), Name::from(String::from("b")));
        assert!(a < b);
    }

    #[test]
    fn a_static_name_counts_nothing_when_copied() {
        let shared: Arc<str> = Arc::from("x");
        let name = Name::from(&shared);
        let copy = name.clone();
        assert_eq!(Arc::strong_count(&shared), 3);
        drop((name, copy));
        assert_eq!(Arc::strong_count(&shared), 1);
        assert!(Name::from("y").clone().is_static());
    }

    #[test]
    fn serializes_as_a_string() {
        let json = serde_json::to_string(&Name::from("gate")).unwrap();
        assert_eq!(json, "\"gate\"");
        let back: Name = serde_json::from_str(&json).unwrap();
        assert_eq!(back, "gate");
    }
}
