//! A list sorted by one of its columns, either way, instead of its default
//! order. Ties go by id the same way, so the last row's id is a cursor that
//! says exactly where the next page starts.
//!
//! Only the id is ordered by an index on every backend. Sorting by another
//! column makes the database sort every matching row, so the server allows
//! it only while the matches are few enough ([`UNINDEXED_SORT_LIMIT`]);
//! an index per sortable column would be paid by every submit.

use super::COUNT_BOUND;

/// Most matching rows a list may sort by a column no index orders: the
/// bound the lists already count up to, so the check costs nothing extra.
pub const UNINDEXED_SORT_LIMIT: i64 = COUNT_BOUND;

/// A column a list can be sorted by.
pub trait SortColumn: Copy + PartialEq + Sized + 'static {
    const ALL: &'static [Self];
    /// Its word in the API (`sort=type`, `sort=-type`).
    fn word(self) -> &'static str;
    /// Its SQL column; never NULL, so the cursor's comparison holds.
    fn column(self) -> &'static str;
    /// An index yields rows in this order.
    fn indexed(self) -> bool;
}

/// A column and a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort<C> {
    pub column: C,
    pub descending: bool,
}

impl<C: SortColumn> Sort<C> {
    /// `type` (ascending) or `-type` (descending).
    pub fn parse(text: &str) -> Option<Self> {
        let (descending, word) = match text.strip_prefix('-') {
            Some(word) => (true, word),
            None => (false, text),
        };
        C::ALL
            .iter()
            .find(|c| c.word() == word)
            .map(|&column| Sort { column, descending })
    }

    /// The API's words for every order, for an error message.
    pub fn words() -> Vec<String> {
        C::ALL
            .iter()
            .flat_map(|c| [c.word().to_string(), format!("-{}", c.word())])
            .collect()
    }

    pub fn indexed(self) -> bool {
        self.column.indexed()
    }
}

/// The task list's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskSort {
    /// Creation order.
    Id,
    Type,
    Status,
    Priority,
    Attempts,
}

impl SortColumn for TaskSort {
    const ALL: &'static [Self] = &[
        TaskSort::Id,
        TaskSort::Type,
        TaskSort::Status,
        TaskSort::Priority,
        TaskSort::Attempts,
    ];

    fn word(self) -> &'static str {
        match self {
            TaskSort::Id => "id",
            TaskSort::Type => "type",
            TaskSort::Status => "status",
            TaskSort::Priority => "priority",
            TaskSort::Attempts => "attempts",
        }
    }

    fn column(self) -> &'static str {
        match self {
            TaskSort::Id => "id",
            TaskSort::Type => "task_type",
            TaskSort::Status => "status",
            TaskSort::Priority => "priority",
            TaskSort::Attempts => "attempts",
        }
    }

    fn indexed(self) -> bool {
        self == TaskSort::Id
    }
}

/// The run list's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunSort {
    /// Start order.
    Id,
    Workflow,
    Status,
    StartedBy,
}

impl SortColumn for RunSort {
    const ALL: &'static [Self] = &[
        RunSort::Id,
        RunSort::Workflow,
        RunSort::Status,
        RunSort::StartedBy,
    ];

    fn word(self) -> &'static str {
        match self {
            RunSort::Id => "id",
            RunSort::Workflow => "workflow",
            RunSort::Status => "status",
            RunSort::StartedBy => "started_by",
        }
    }

    fn column(self) -> &'static str {
        match self {
            RunSort::Id => "id",
            RunSort::Workflow => "workflow_name",
            RunSort::Status => "status",
            RunSort::StartedBy => "started_by",
        }
    }

    fn indexed(self) -> bool {
        self == RunSort::Id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_and_its_minus_read_as_the_two_directions() {
        let up = Sort::<TaskSort>::parse("type").unwrap();
        assert_eq!((up.column, up.descending), (TaskSort::Type, false));
        let down = Sort::<RunSort>::parse("-started_by").unwrap();
        assert_eq!((down.column, down.descending), (RunSort::StartedBy, true));
        assert!(Sort::<TaskSort>::parse("payload").is_none());
        assert!(Sort::<TaskSort>::parse("--id").is_none());
        assert!(Sort::<TaskSort>::words().contains(&"-priority".to_string()));
    }
}
