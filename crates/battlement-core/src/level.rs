//! Service levels and request priorities shared by the degradation gate,
//! its controls and its events: [`Level`] and [`Priority`].
//!
//! They live in core (and are re-exported by `battlement-gate`) because
//! [`Control::SetLevel`](crate::Control::SetLevel) and
//! [`EventKind::LevelChanged`](crate::EventKind::LevelChanged) name them,
//! and the registry and the HTTP glue must understand them without
//! depending on the gate.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How degraded a service is, from `Normal` (everything admitted) to
/// `Critical` (only critical work admitted). Ordered: `Normal < Minimal <
/// Moderate < Severe < Critical`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Healthy: every priority is admitted.
    #[default]
    Normal,
    /// Slightly degraded.
    Minimal,
    /// Degraded.
    Moderate,
    /// Badly degraded.
    Severe,
    /// Barely up: only critical work.
    Critical,
}

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Level; 5] = [
        Level::Normal,
        Level::Minimal,
        Level::Moderate,
        Level::Severe,
        Level::Critical,
    ];

    /// The level's name in `snake_case`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Normal => "normal",
            Level::Minimal => "minimal",
            Level::Moderate => "moderate",
            Level::Severe => "severe",
            Level::Critical => "critical",
        }
    }

    /// The level's position in [`Level::ALL`] (0 for `Normal`).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The level at `index` in [`Level::ALL`], if there is one.
    pub const fn from_index(index: usize) -> Option<Level> {
        if index < Level::ALL.len() {
            Some(Level::ALL[index])
        } else {
            None
        }
    }

    /// One level worse, saturating at `Critical`.
    pub const fn raised(self) -> Level {
        match Level::from_index(self.index() + 1) {
            Some(l) => l,
            None => Level::Critical,
        }
    }

    /// One level better, saturating at `Normal`.
    pub const fn lowered(self) -> Level {
        match self.index().checked_sub(1) {
            Some(i) => Level::ALL[i],
            None => Level::Normal,
        }
    }
}

/// How much a request matters when the service must shed work. Ordered from
/// most to least important: `Critical < High < Normal < Low < Sheddable`
/// (a smaller value is more important).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Must be served while the service is up at all (health checks,
    /// payments).
    Critical,
    /// Important user-facing work.
    High,
    /// Ordinary work.
    #[default]
    Normal,
    /// Work that can wait (prefetch, background refresh).
    Low,
    /// Work that may be dropped first (analytics, speculative calls).
    Sheddable,
}

impl Priority {
    /// Every priority, most important first.
    pub const ALL: [Priority; 5] = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
        Priority::Sheddable,
    ];

    /// The priority's name in `snake_case`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
            Priority::Sheddable => "sheddable",
        }
    }

    /// The priority's position in [`Priority::ALL`] (0 for `Critical`).
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// The error of parsing a [`Level`] or a [`Priority`] from a string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`; expected one of: {expected}")]
pub struct ParseNameError {
    what: &'static str,
    value: String,
    expected: &'static str,
}

macro_rules! named_enum_impls {
    ($ty:ident, $what:literal, $expected:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = ParseNameError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                // The exact name first: what a header or a config file
                // holds nearly always, and a few byte compares against
                // a trim over Unicode whitespace and a case-folding one.
                if let Some(v) = $ty::ALL.into_iter().find(|v| v.as_str() == s) {
                    return Ok(v);
                }
                let trimmed = s.trim();
                $ty::ALL
                    .into_iter()
                    .find(|v| v.as_str().eq_ignore_ascii_case(trimmed))
                    .ok_or_else(|| ParseNameError {
                        what: $what,
                        value: s.to_owned(),
                        expected: $expected,
                    })
            }
        }
    };
}

named_enum_impls!(
    Level,
    "level",
    "normal, minimal, moderate, severe, critical"
);
named_enum_impls!(
    Priority,
    "priority",
    "critical, high, normal, low, sheddable"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_steps() {
        assert!(Level::Normal < Level::Critical);
        assert!(Priority::Critical < Priority::Sheddable);
        assert_eq!(Level::Normal.raised(), Level::Minimal);
        assert_eq!(Level::Critical.raised(), Level::Critical);
        assert_eq!(Level::Normal.lowered(), Level::Normal);
        assert_eq!(Level::Severe.lowered(), Level::Moderate);
        for (i, l) in Level::ALL.iter().enumerate() {
            assert_eq!(l.index(), i);
            assert_eq!(Level::from_index(i), Some(*l));
        }
        assert_eq!(Level::from_index(5), None);
    }

    #[test]
    fn parse_round_trip() {
        for l in Level::ALL {
            assert_eq!(l.to_string().parse::<Level>().unwrap(), l);
        }
        for p in Priority::ALL {
            assert_eq!(p.to_string().parse::<Priority>().unwrap(), p);
        }
        assert_eq!("SEVERE".parse::<Level>().unwrap(), Level::Severe);
        let err = "loud".parse::<Level>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown level `loud`; expected one of: normal, minimal, moderate, severe, critical"
        );
        assert_eq!(
            serde_json::to_string(&Priority::Sheddable).unwrap(),
            "\"sheddable\""
        );
    }
}
