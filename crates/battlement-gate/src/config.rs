//! The gate's builder: [`GateBuilder`].

use std::time::Duration;

use battlement_core::{EventSink, InvalidConfig, Level, Name, Priority};

use crate::{AdmissionTable, Gate};

/// Configures a [`Gate`]. Made by [`Gate::builder`]; each method consumes
/// and returns the builder; [`build`](Self::build) validates.
///
/// ```
/// use std::time::Duration;
/// use battlement_gate::{AdmissionTable, Gate, Level, Priority};
///
/// let gate = Gate::builder("api")
///     .default_priority(Priority::Low)
///     .retry_after(Some(Duration::from_secs(5)))
///     .table(AdmissionTable::default().admit(Level::Severe, Priority::Normal, true))
///     .build()
///     .unwrap();
/// assert_eq!(gate.level(), Level::Normal);
/// ```
#[derive(Debug, Clone)]
pub struct GateBuilder {
    pub(crate) name: Name,
    pub(crate) table: AdmissionTable,
    pub(crate) default_priority: Priority,
    pub(crate) initial_level: Level,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) events: EventSink,
    pub(crate) shed_event_interval: Duration,
}

impl GateBuilder {
    /// A builder for a gate named `name`, with the defaults below.
    pub fn new(name: impl Into<Name>) -> Self {
        GateBuilder {
            name: name.into(),
            table: AdmissionTable::default(),
            default_priority: Priority::Normal,
            initial_level: Level::Normal,
            retry_after: Some(Duration::from_secs(1)),
            events: EventSink::none(),
            shed_event_interval: Duration::from_secs(1),
        }
    }

    /// Which priorities each level admits. Default:
    /// [`AdmissionTable::default`] (each level up sheds one more priority).
    /// Must be monotone.
    #[must_use]
    pub fn table(mut self, table: AdmissionTable) -> Self {
        self.table = table;
        self
    }

    /// The priority of a request whose extractor says nothing. Default:
    /// [`Priority::Normal`].
    #[must_use]
    pub fn default_priority(mut self, priority: Priority) -> Self {
        self.default_priority = priority;
        self
    }

    /// The level the gate starts at. Default: [`Level::Normal`].
    #[must_use]
    pub fn initial_level(mut self, level: Level) -> Self {
        self.initial_level = level;
        self
    }

    /// The wait a [`Shed`](battlement_core::Shed) error suggests to the
    /// caller. Default: 1 second. `None` suggests nothing. At most one hour.
    #[must_use]
    pub fn retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Where level changes, sheds and resets go. Default: nowhere but
    /// `tracing`.
    #[must_use]
    pub fn events(mut self, sink: EventSink) -> Self {
        self.events = sink;
        self
    }

    /// How often a [`Shed`](battlement_core::Shed) event is told while
    /// requests keep being shed: the first shed after each level change,
    /// then at most one per `interval`; every shed is counted
    /// (`Gate::shed`, `shed_total`). Default: 1 second. Zero tells every
    /// shed.
    #[must_use]
    pub fn shed_event_interval(mut self, interval: Duration) -> Self {
        self.shed_event_interval = interval;
        self
    }

    /// Validates the configuration and builds the gate.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] when the table is not monotone or `retry_after`
    /// is over an hour.
    pub fn build(self) -> Result<Gate, InvalidConfig> {
        self.table.validate()?;
        if let Some(d) = self.retry_after
            && d > Duration::from_secs(3600)
        {
            return Err(InvalidConfig::new(
                "gate",
                "retry_after",
                d,
                "must be at most 1 hour",
            ));
        }
        Ok(Gate::from_builder(self))
    }
}
