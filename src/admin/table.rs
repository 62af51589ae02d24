//! Result sets of the admin console: text columns, rows of optional text,
//! encoded as RowDescription + DataRow… + CommandComplete.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;

use crate::protocol::messages;

/// A result set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Column names.
    pub columns: &'static [&'static str],
    /// Rows; each has one value per column (`None` is NULL).
    pub rows: Vec<Vec<Option<String>>>,
}

impl Table {
    /// An empty table with `columns`.
    pub fn new(columns: &'static [&'static str]) -> Table {
        Table {
            columns,
            rows: Vec::new(),
        }
    }

    /// Appends a row (padded or cut to the number of columns).
    pub fn push(&mut self, mut row: Vec<Option<String>>) {
        row.resize(self.columns.len(), None);
        self.rows.push(row);
    }

    /// Writes the result set with CommandComplete `tag`.
    pub fn encode(&self, out: &mut BytesMut, tag: &str) {
        messages::row_description_text(out, self.columns);
        for row in &self.rows {
            let values: Vec<Option<&str>> = row.iter().map(|v| v.as_deref()).collect();
            messages::data_row(out, &values);
        }
        messages::command_complete(out, tag);
    }

    /// The values of column `name`, one per row (for tests and lookups).
    pub fn column(&self, name: &str) -> Vec<Option<&str>> {
        match self.columns.iter().position(|c| *c == name) {
            Some(i) => self.rows.iter().map(|r| r[i].as_deref()).collect(),
            None => Vec::new(),
        }
    }
}

/// A value as text.
pub fn v(x: impl ToString) -> Option<String> {
    Some(x.to_string())
}

/// `YYYY-MM-DD HH:MM:SS UTC`, as PgBouncer shows times.
pub fn format_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times() {
        assert_eq!(format_time(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29 12:34:56
        assert_eq!(format_time(t), "2024-02-29 12:34:56 UTC");
    }

    #[test]
    fn rows_are_padded() {
        let mut t = Table::new(&["a", "b"]);
        t.push(vec![v(1)]);
        assert_eq!(t.rows[0], vec![Some("1".to_string()), None]);
        assert_eq!(t.column("a"), vec![Some("1")]);
        let mut out = BytesMut::new();
        t.encode(&mut out, "SHOW");
        assert_eq!(out[0], b'T');
    }
}
