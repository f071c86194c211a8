//! Which priorities each level admits: [`AdmissionTable`].

use std::fmt;

use battlement_core::{InvalidConfig, Level, Priority};

/// Which [`Priority`]s each [`Level`] admits: one bitmask per level, read
/// on every call without a lock.
///
/// The default table sheds one more priority at each level up:
///
/// | level      | critical | high | normal | low | sheddable |
/// |------------|:--------:|:----:|:------:|:---:|:---------:|
/// | `Normal`   | yes      | yes  | yes    | yes | yes       |
/// | `Minimal`  | yes      | yes  | yes    | yes | —         |
/// | `Moderate` | yes      | yes  | yes    | —   | —         |
/// | `Severe`   | yes      | yes  | —      | —   | —         |
/// | `Critical` | yes      | —    | —      | —   | —         |
///
/// A custom table must be *monotone*: a priority admitted at a level is
/// admitted at every lower level (the gate's builder rejects a table that
/// is not, since raising the level would then let work in).
///
/// ```
/// use battlement_gate::{AdmissionTable, Level, Priority};
///
/// // Keep `High` work until `Critical`.
/// let table = AdmissionTable::default().admit(Level::Severe, Priority::High, true);
/// assert!(table.admits(Level::Severe, Priority::High));
/// assert!(!table.admits(Level::Severe, Priority::Normal));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AdmissionTable {
    masks: [u8; 5],
}

impl Default for AdmissionTable {
    fn default() -> Self {
        AdmissionTable {
            masks: [0b11111, 0b01111, 0b00111, 0b00011, 0b00001],
        }
    }
}

impl AdmissionTable {
    /// A table from rows indexed by [`Level::index`], each row indexed by
    /// [`Priority::index`]: `rows[level][priority]` is `true` when the
    /// level admits the priority.
    pub const fn from_rows(rows: [[bool; 5]; 5]) -> Self {
        let mut masks = [0u8; 5];
        let mut l = 0;
        while l < 5 {
            let mut p = 0;
            while p < 5 {
                if rows[l][p] {
                    masks[l] |= 1 << p;
                }
                p += 1;
            }
            l += 1;
        }
        AdmissionTable { masks }
    }

    /// A table where each level admits every priority up to (and
    /// including) the one given, in [`Level::ALL`] order: `lowest[i]` is the
    /// least important priority admitted at level `i`.
    pub const fn from_lowest_admitted(lowest: [Priority; 5]) -> Self {
        let mut masks = [0u8; 5];
        let mut l = 0;
        while l < 5 {
            masks[l] = ((1u16 << (lowest[l].index() + 1)) - 1) as u8;
            l += 1;
        }
        AdmissionTable { masks }
    }

    /// The same table with `priority` admitted (or not) at `level`.
    #[must_use]
    pub const fn admit(mut self, level: Level, priority: Priority, admitted: bool) -> Self {
        let bit = 1u8 << priority.index();
        if admitted {
            self.masks[level.index()] |= bit;
        } else {
            self.masks[level.index()] &= !bit;
        }
        self
    }

    /// `true` when `level` admits `priority`.
    #[inline]
    pub const fn admits(&self, level: Level, priority: Priority) -> bool {
        self.admits_index(level.index(), priority)
    }

    #[inline]
    pub(crate) const fn admits_index(&self, level: usize, priority: Priority) -> bool {
        self.masks[level] & (1 << priority.index()) != 0
    }

    /// The table as rows of `bool`, the inverse of [`from_rows`](Self::from_rows).
    pub fn rows(&self) -> [[bool; 5]; 5] {
        let mut rows = [[false; 5]; 5];
        for (l, row) in rows.iter_mut().enumerate() {
            for (p, cell) in row.iter_mut().enumerate() {
                *cell = self.masks[l] & (1 << p) != 0;
            }
        }
        rows
    }

    /// Checks the table is monotone: what a level admits, every lower level
    /// admits too.
    pub(crate) fn validate(&self) -> Result<(), InvalidConfig> {
        for l in 1..5 {
            if self.masks[l] & !self.masks[l - 1] != 0 {
                return Err(InvalidConfig::new(
                    "gate",
                    "admission_table",
                    self,
                    format!(
                        "must be monotone: level {} admits a priority that level {} sheds",
                        Level::ALL[l],
                        Level::ALL[l - 1]
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for AdmissionTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for level in Level::ALL {
            let admitted: Vec<&str> = Priority::ALL
                .into_iter()
                .filter(|p| self.admits(level, *p))
                .map(Priority::as_str)
                .collect();
            map.entry(&level.as_str(), &admitted);
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_sheds_one_more_per_level() {
        let t = AdmissionTable::default();
        for (l, level) in Level::ALL.into_iter().enumerate() {
            for (p, priority) in Priority::ALL.into_iter().enumerate() {
                assert_eq!(t.admits(level, priority), p + l < 5, "{level} {priority}");
            }
        }
        assert!(t.validate().is_ok());
    }

    #[test]
    fn constructors_agree() {
        let lowest = [
            Priority::Sheddable,
            Priority::Low,
            Priority::Normal,
            Priority::High,
            Priority::Critical,
        ];
        assert_eq!(
            AdmissionTable::from_lowest_admitted(lowest),
            AdmissionTable::default()
        );
        let t = AdmissionTable::default();
        assert_eq!(AdmissionTable::from_rows(t.rows()), t);
    }

    #[test]
    fn non_monotone_rejected() {
        let t = AdmissionTable::default().admit(Level::Critical, Priority::Low, true);
        let err = t.validate().unwrap_err();
        assert_eq!(err.field, "admission_table");
    }
}
