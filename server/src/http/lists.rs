//! The query parameters the list routes share (`/tasks`, `/runs`): one
//! rule each for statuses, search text, times and page sizes.

use drover_engine::store::{ListCount, Sort, SortColumn, UNINDEXED_SORT_LIMIT};
use drover_engine::FieldError;

/// The longest search text: enough for any id, name or fragment worth
/// looking for; a search reads rows, so it is not unbounded.
pub const MAX_SEARCH_LEN: usize = 200;

/// Statuses from `a,b,c`, each named once: `all` are the known ones, by
/// `name`, which the error lists.
pub fn statuses<S: Copy + PartialEq>(
    list: Option<&str>,
    all: &[S],
    name: fn(S) -> &'static str,
) -> Result<Vec<S>, FieldError> {
    let mut statuses = Vec::new();
    for word in list
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
    {
        let s = all
            .iter()
            .copied()
            .find(|s| name(*s) == word)
            .ok_or_else(|| {
                let known: Vec<&str> = all.iter().map(|s| name(*s)).collect();
                FieldError::new(
                    "status",
                    format!(
                        "unknown status {word:?}; one or more of {}, comma-separated",
                        known.join(", ")
                    ),
                )
            })?;
        if !statuses.contains(&s) {
            statuses.push(s);
        }
    }
    Ok(statuses)
}

/// `q`, trimmed; none when blank.
pub fn search(q: Option<String>) -> Result<Option<String>, FieldError> {
    let text = q.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    match text {
        Some(t) if t.len() > MAX_SEARCH_LEN => Err(FieldError::new(
            "q",
            format!("longer than {MAX_SEARCH_LEN} bytes"),
        )),
        other => Ok(other),
    }
}

/// An RFC 3339 time (any offset) as microseconds since the epoch.
pub fn time(field: &'static str, text: Option<&str>) -> Result<Option<i64>, FieldError> {
    text.map(|t| {
        chrono::DateTime::parse_from_rfc3339(t.trim())
            .map(|t| t.timestamp_micros())
            .map_err(|e| {
                FieldError::new(
                    field,
                    format!("{e}: expected an RFC 3339 time such as 2026-12-07T10:00:00Z"),
                )
            })
    })
    .transpose()
}

/// A page size: 1 to 1,000, 100 when not given.
pub fn limit(limit: Option<i64>) -> Result<i64, FieldError> {
    let limit = limit.unwrap_or(100);
    if (1..=1000).contains(&limit) {
        Ok(limit)
    } else {
        Err(FieldError::new("limit", "must be between 1 and 1000"))
    }
}

/// `sort`: a column's word, `-` before it for descending; none when blank.
pub fn sort<C: SortColumn>(text: Option<&str>) -> Result<Option<Sort<C>>, FieldError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    Sort::parse(text).map(Some).ok_or_else(|| {
        FieldError::new(
            "sort",
            format!(
                "unknown order {text:?}; one of {}",
                Sort::<C>::words().join(", ")
            ),
        )
    })
}

/// Refuses a sort no index serves while more `rows` match than the
/// database may sort for one page (the count is already bounded there).
pub fn sortable<C: SortColumn>(
    sort: Option<Sort<C>>,
    count: &ListCount,
    rows: &str,
) -> Result<(), FieldError> {
    match sort {
        Some(s) if !s.indexed() && (count.more || count.total > UNINDEXED_SORT_LIMIT) => {
            Err(FieldError::new(
                "sort",
                format!(
                    "sorting by {} needs at most {UNINDEXED_SORT_LIMIT} matching {rows}; \
                     narrow the filters first",
                    s.column.word()
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// Trims a page fetched one row long (so a next page is offered only if
/// it has rows) and returns the cursor of the next page.
pub fn next_cursor<T>(rows: &mut Vec<T>, limit: i64, id: impl Fn(&T) -> i64) -> Option<i64> {
    if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(id)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_parsed_once_each_and_a_bad_one_is_named() {
        let all = ["a", "b"];
        let name = |s: &'static str| s;
        assert_eq!(
            statuses(Some("a, b,a,"), &all, name).unwrap(),
            vec!["a", "b"]
        );
        assert!(statuses(None, &all, name).unwrap().is_empty());
        let e = statuses(Some("a,c"), &all, name).unwrap_err();
        assert_eq!(e.field, "status");
        assert!(e.message.contains("one or more of a, b"), "{}", e.message);
    }

    #[test]
    fn times_take_any_offset() {
        assert_eq!(
            time("t", Some("1970-01-01T01:00:00+01:00")).unwrap(),
            Some(0)
        );
        assert_eq!(time("t", Some("yesterday")).unwrap_err().field, "t");
    }

    #[test]
    fn a_sort_is_a_known_word_and_unindexed_ones_need_few_rows() {
        use drover_engine::store::TaskSort;
        assert_eq!(sort::<TaskSort>(None).unwrap(), None);
        assert_eq!(sort::<TaskSort>(Some(" ")).unwrap(), None);
        let by_type = sort::<TaskSort>(Some("-type")).unwrap();
        assert_eq!(
            by_type.map(|s| (s.column, s.descending)),
            Some((TaskSort::Type, true))
        );
        let e = sort::<TaskSort>(Some("payload")).unwrap_err();
        assert_eq!(e.field, "sort");
        assert!(e.message.contains("-priority"), "{}", e.message);
        let few = ListCount {
            total: 10,
            more: false,
        };
        let many = ListCount {
            total: UNINDEXED_SORT_LIMIT + 1,
            more: false,
        };
        let counted_out = ListCount {
            total: UNINDEXED_SORT_LIMIT,
            more: true,
        };
        assert!(sortable(by_type, &few, "tasks").is_ok());
        assert_eq!(sortable(by_type, &many, "tasks").unwrap_err().field, "sort");
        assert!(sortable(by_type, &counted_out, "tasks").is_err());
        let by_id = sort::<TaskSort>(Some("id")).unwrap();
        assert!(sortable(by_id, &many, "tasks").is_ok());
    }

    #[test]
    fn a_page_one_row_long_gives_the_cursor() {
        let mut rows = vec![9, 8, 7];
        assert_eq!(next_cursor(&mut rows, 2, |r| *r), Some(8));
        assert_eq!(rows, vec![9, 8]);
        let mut rows = vec![9, 8];
        assert_eq!(next_cursor(&mut rows, 2, |r| *r), None);
    }
}
