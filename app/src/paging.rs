//! What the paged lists share (Tasks, Runs): their URLs, the "51–100 of
//! 1,234" line and the links to the first and next pages. A page's URL
//! carries the cursor (`before`) and how many rows came before it (`from`).

use leptos::prelude::*;
use leptos_router::params::ParamsMap;

use drover_protocol::api::LIST_COUNT_BOUND;

use crate::api::enc;
use crate::format::{count, rfc3339};

/// Rows on one page of a list.
pub const PAGE: usize = 50;

/// The "created" choices: URL word, label, seconds back from now.
pub const SINCE: [(&str, &str, i64); 4] = [
    ("1h", "last hour", 3_600),
    ("24h", "last 24 hours", 86_400),
    ("7d", "last 7 days", 7 * 86_400),
    ("30d", "last 30 days", 30 * 86_400),
];

/// `path?k=v&…`, values encoded; `path` alone when there are none.
pub fn with_query(path: &str, pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return path.to_string();
    }
    let q: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    format!("{path}?{}", q.join("&"))
}

/// A trimmed, non-empty parameter.
pub fn param(q: &ParamsMap, key: &str) -> Option<String> {
    q.get(key)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The statuses of `status=a,b` (a link) or `status=a&status=b` (a form's
/// boxes), each once, only the `known` ones.
pub fn statuses(q: &ParamsMap, known: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in q
        .get_all("status")
        .unwrap_or_default()
        .iter()
        .flat_map(|v| v.split(','))
    {
        let word = word.trim();
        if known.contains(&word) && !out.iter().any(|s| s == word) {
            out.push(word.to_string());
        }
    }
    out
}

/// A known "since" word from the URL.
pub fn since(q: &ParamsMap) -> Option<String> {
    param(q, "since").filter(|w| SINCE.iter().any(|(k, _, _)| k == w))
}

/// The API's `created_after` for a "since" word, counted back from
/// `now_us` to the minute, so the server's render and the browser's agree.
pub fn created_after(since: Option<&str>, now_us: i64) -> Option<String> {
    let secs = SINCE.iter().find(|(k, _, _)| Some(*k) == since)?.2;
    let minute = now_us - now_us.rem_euclid(60_000_000);
    Some(rfc3339(minute - secs * 1_000_000))
}

/// The cursor and the count of rows before this page, from the URL.
pub fn position(q: &ParamsMap) -> (Option<i64>, usize) {
    (
        q.get("before").and_then(|b| b.parse().ok()),
        q.get("from").and_then(|b| b.parse().ok()).unwrap_or(0),
    )
}

/// "51–100 of 1,234" ("10,000+" when the count stopped at its bound).
pub fn range_text(first: usize, shown: usize, total: i64, more: bool) -> String {
    let total = if more {
        format!("{}+", count(total))
    } else {
        count(total)
    };
    if shown == 0 {
        return format!("none of {total}");
    }
    format!("{}–{} of {total}", first + 1, first + shown)
}

/// The line above a list: which rows of how many.
pub fn range_line(first: usize, shown: usize, total: i64, more: bool) -> impl IntoView {
    view! { <p class="list-range muted" data-testid="list-range">{range_text(first, shown, total, more)}</p> }
}

/// `sort=word` or `sort=-word` when `word` is one of the list's `columns`.
pub fn sort(q: &ParamsMap, columns: &[&str]) -> Option<String> {
    param(q, "sort").filter(|s| columns.contains(&s.strip_prefix('-').unwrap_or(s)))
}

/// How `word`'s column is sorted now: `Some(true)` descending. With no
/// `sort` the lists are newest first, which is `-id`.
fn sorted_now(current: Option<&str>, word: &str) -> Option<bool> {
    match current.unwrap_or("-id") {
        c if c == word => Some(false),
        c => (c.strip_prefix('-') == Some(word)).then_some(true),
    }
}

/// A column heading that sorts the list: a link to its first page sorted
/// by `word`, ascending first, then the other way. Only the id has an
/// index: another column sorts while at most [`LIST_COUNT_BOUND`] rows
/// match (`total`, `more` as the list counted them), else it says why not.
/// `href(sort)` is the list's URL in that order (`None`: the default).
pub fn sort_heading(
    label: &'static str,
    word: &'static str,
    current: Option<&str>,
    (total, more): (i64, bool),
    href: &dyn Fn(Option<String>) -> String,
) -> impl IntoView {
    let now = sorted_now(current, word);
    let aria = match now {
        Some(true) => "descending",
        Some(false) => "ascending",
        None => "none",
    };
    let arrow = match now {
        Some(true) => " ▼",
        Some(false) => " ▲",
        None => "",
    };
    if word != "id" && (more || total > LIST_COUNT_BOUND) {
        let why = format!(
            "Narrow the list to {} rows or fewer to sort by {}",
            count(LIST_COUNT_BOUND),
            label.to_lowercase()
        );
        return view! { <th aria-sort=aria><span title=why>{label}</span></th> }.into_any();
    }
    let next = if now == Some(false) {
        format!("-{word}")
    } else {
        word.to_string()
    };
    let to = href((next != "-id").then_some(next));
    view! {
        <th aria-sort=aria>
            <a class="sort" href=to data-testid=format!("sort-{word}")>{label}{arrow}</a>
        </th>
    }
    .into_any()
}

/// The links below a list. `href(before)` is the list's URL with its
/// filters, from that cursor on (`None`: the first page).
pub fn page_links(
    first: usize,
    shown: usize,
    next: Option<i64>,
    href: impl Fn(Option<i64>) -> String,
) -> impl IntoView {
    let older = next.map(|n| {
        let to = href(Some(n));
        let sep = if to.contains('?') { '&' } else { '?' };
        format!("{to}{sep}from={}", first + shown)
    });
    let newest = (first > 0).then(|| href(None));
    view! {
        <p class="pager">
            {newest.map(|h| view! { <a href=h data-testid="newest">"← First page"</a> })}
            {older.map(|h| view! { <a href=h data-testid="older">"Next page →"</a> })}
        </p>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_read_as_people_count() {
        assert_eq!(range_text(0, 50, 1000, false), "1–50 of 1,000");
        assert_eq!(range_text(50, 3, 10_000, true), "51–53 of 10,000+");
        assert_eq!(range_text(0, 0, 0, false), "none of 0");
    }

    #[test]
    fn since_counts_back_from_the_minute() {
        let now = 3_600_000_000 + 59_000_000; // 01:00:59
        assert_eq!(
            created_after(Some("1h"), now).as_deref(),
            Some("1970-01-01T00:00:00Z")
        );
        assert_eq!(created_after(Some("2h"), now), None);
        assert_eq!(created_after(None, now), None);
    }

    #[test]
    fn a_sorted_column_is_read_from_the_sort_word() {
        assert_eq!(sorted_now(None, "id"), Some(true));
        assert_eq!(sorted_now(None, "type"), None);
        assert_eq!(sorted_now(Some("type"), "type"), Some(false));
        assert_eq!(sorted_now(Some("-type"), "type"), Some(true));
        assert_eq!(sorted_now(Some("-type"), "id"), None);
        assert_eq!(sorted_now(Some("-types"), "type"), None);
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(with_query("/runs", &[]), "/runs");
        assert_eq!(
            with_query("/runs", &[("q", "a b&c".into()), ("status", "x".into())]),
            "/runs?q=a%20b%26c&status=x"
        );
    }
}
